"""The decoding side of the server: one loaded checkpoint and `process`, which decodes a batch
of requests (the batcher's one call per batch) with the same `Translator` and `MaskFiller`
that `tfcli decode` uses, so a request's answer equals `tfcli decode`'s output for its lines.

Requests with the same decode settings are decoded as one chunk (sorted by length, cut into
token-budget batches, back in input order); a request whose own input is refused (e.g. a
constraint longer than its output limit) gets that error alone: its group is decoded again
request by request so the other requests still get their answers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tfcli.decoding.mask_predict import MaskPredictTranslator
from tfcli.decoding.translate import Filled, MaskFiller, Translation, Translator
from tfcli.errors import TfcliError
from tfcli.recipe.schema import DecodeConfig


@dataclass
class TranslateJob:
    """One /translate request, validated: its lines, settings and optional constraints."""

    sentences: list[str]
    cfg: DecodeConfig
    constraints: list[list[str]] | None = None


@dataclass
class FillJob:
    """One /fill-mask request."""

    sentences: list[str]
    topk: int


def checkpoint_decode_config(meta: dict) -> DecodeConfig:
    """The decode section of the checkpoint's recipe (unknown keys of older recipes dropped)."""
    from tfcli.recipe import loader

    known = {f.name for f in dataclasses.fields(DecodeConfig)}
    embedded = (meta.get("recipe") or {}).get("decode") or {}
    section = {k: v for k, v in embedded.items() if k in known}
    return loader.from_dict({"decode": section}, "checkpoint decode settings").decode


def settings_key(cfg: DecodeConfig) -> tuple:
    """Hashable identity of a decode configuration (requests that may share a chunk)."""
    return tuple((f.name, str(getattr(cfg, f.name))) for f in dataclasses.fields(cfg))


class Engine:
    """A checkpoint ready to serve: model, tokenizers, its own decode settings, and `process`."""

    def __init__(self, model: torch.nn.Module, meta: dict, name: str) -> None:
        from tfcli.checkpoints.files import load_tokenizers

        self.model, self.meta, self.name = model, meta, name
        self.kind = meta.get("kind", "seq2seq")
        self.toks = load_tokenizers(meta)
        self.defaults = checkpoint_decode_config(meta)
        # decodes every token at once (mask-predict); the requests' settings differ
        self.non_autoregressive = (meta.get("model") or {}).get("decoder") == "non_autoregressive"

    @classmethod
    def load(cls, paths: Sequence[Path], device: torch.device | str) -> Engine:
        """One checkpoint, or an ensemble of several seq2seq ones (as `tfcli decode A B`)."""
        from tfcli.checkpoints.files import read_meta
        from tfcli.decoding.ensemble import check_members, load_members

        metas = [read_meta(p) for p in paths]
        check_members(paths, metas)
        from tfcli.allocator import keep_freed_memory

        keep_freed_memory(device)  # on CPU, every step / pass reuses its freed tensors
        model, meta = load_members(paths, device)
        return cls(model, meta, " + ".join(str(p) for p in paths))

    def source_tokens(self, sentences: list[str]) -> int:
        """Batch cost of a request: its source tokens (the batcher's budget unit)."""
        return sum(len(e.ids) + 1 for e in self.toks["src"].encode_batch(sentences))

    def health(self) -> dict[str, Any]:
        spec = self.model.spec
        return {
            "status": "ok",
            "model": self.name,
            "kind": self.kind,
            "step": self.meta.get("step"),
            "members": getattr(spec, "members", 1),
            "max_positions": spec.max_positions,
            "device": str(next(self.model.parameters()).device),
            "decode": {f.name: _plain(getattr(self.defaults, f.name))
                       for f in dataclasses.fields(self.defaults)},
        }  # fmt: skip

    def process(self, jobs: Sequence[TranslateJob | FillJob]) -> list[Any]:
        """Per job its result (a list of Translation / Filled, in its order) or its exception."""
        out: list[Any] = [None] * len(jobs)
        groups: dict[tuple, list[int]] = {}
        for i, job in enumerate(jobs):
            key = ("fill", job.topk) if isinstance(job, FillJob) else settings_key(job.cfg)
            groups.setdefault(key, []).append(i)
        for members in groups.values():
            try:
                results = self._decode([jobs[i] for i in members])
            except TfcliError as e:
                if len(members) == 1:
                    out[members[0]] = e
                    continue
                for i in members:  # find the request at fault; the others still get answers
                    out[i] = _caught(self._decode, [jobs[i]])
                continue
            for i, result in zip(members, results, strict=True):
                out[i] = result
        return out

    def _decode(self, jobs: list[TranslateJob | FillJob]) -> list[list]:
        """One chunk for jobs of the same settings -> each job's results."""
        lines = [s for job in jobs for s in job.sentences]
        first = jobs[0]
        if isinstance(first, FillJob):
            filler = MaskFiller(self.model, self.toks["src"], first.topk, self.defaults.max_tokens)
            flat: list[Translation] | list[Filled] = filler.fill_chunk(lines)
        else:
            kind = MaskPredictTranslator if self.non_autoregressive else Translator
            translator = kind(self.model, self.toks["src"], self.toks["tgt"], first.cfg)
            cons = None
            if any(job.constraints for job in jobs):
                cons = [c for job in jobs for c in (job.constraints or [[]] * len(job.sentences))]
            flat = translator.translate_chunk(lines, 0, cons)
        out, start = [], 0
        for job in jobs:
            out.append(flat[start : start + len(job.sentences)])
            start += len(job.sentences)
        return out


def _caught(decode, jobs) -> Any:
    try:
        return decode(jobs)[0]
    except TfcliError as e:
        return e


def _plain(value: Any) -> Any:
    return getattr(value, "value", value)

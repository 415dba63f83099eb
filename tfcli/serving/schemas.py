"""What a client may send: the request bodies (unknown fields refused, types strict), the size
limits of untrusted input, and the step from a validated body to a decode job.

Every problem becomes `BadRequest` with one line naming the field, which the app answers
with 4xx and `{"error": "..."}`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tfcli.decoding.constraints import MAX_PHRASES
from tfcli.recipe.schema import DecodeConfig, NatLength, SearchMode
from tfcli.serving.engine import FillJob, TranslateJob


class BadRequest(Exception):
    """A request the server refuses: `status` (4xx) and a one-line reason."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    """Bounds on one request (the batcher bounds the queue)."""

    max_sentences: int = 64
    max_chars: int = 2000  # per sentence
    max_body_bytes: int = 1 << 20
    max_beam: int = 32
    max_nbest: int = 32
    max_topk: int = 100
    max_iterations: int = 100  # mask-predict passes


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TranslateRequest(_Strict):
    """POST /translate. Unset settings take the checkpoint's decode section."""

    sentences: list[str] = Field(min_length=1)
    mode: Literal["greedy", "beam", "sample", "mask-predict"] | None = None
    beam: int | None = Field(None, ge=1)
    iterations: int | None = Field(None, ge=1)  # mask-predict (non-autoregressive models)
    length_beam: int | None = Field(None, ge=1)
    nbest: int | None = Field(None, ge=1)
    length_penalty: float | None = None
    max_len_a: float | None = Field(None, ge=0)
    max_len_b: int | None = Field(None, ge=0)
    min_len: int | None = Field(None, ge=0)
    no_repeat_ngram: int | None = Field(None, ge=0)
    temperature: float | None = Field(None, gt=0)
    top_k: int | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = None
    constraints: list[list[str]] | None = None  # per sentence, phrases its output must contain


class FillMaskRequest(_Strict):
    """POST /fill-mask: sentences holding <mask> tokens."""

    sentences: list[str] = Field(min_length=1)
    topk: int | None = Field(None, ge=1)


_SETTING = {  # request field -> DecodeConfig field
    "beam": "beam_size", "nbest": "nbest", "length_penalty": "length_penalty",
    "max_len_a": "max_len_a", "max_len_b": "max_len_b", "min_len": "min_len",
    "no_repeat_ngram": "no_repeat_ngram", "temperature": "temperature", "top_k": "top_k",
    "top_p": "top_p", "seed": "seed", "iterations": "iterations", "length_beam": "length_beam",
}  # fmt: skip
_AR_ONLY = ("beam", "length_penalty", "no_repeat_ngram", "temperature", "top_k", "top_p",
            "seed", "constraints")  # fmt: skip
_NAT_ONLY = ("iterations", "length_beam")


def check_sentences(sentences: list[str], limits: Limits) -> None:
    if len(sentences) > limits.max_sentences:
        raise BadRequest(
            f"sentences: {len(sentences)} given, at most {limits.max_sentences} per request"
        )
    for i, s in enumerate(sentences):
        if len(s) > limits.max_chars:
            raise BadRequest(f"sentences[{i}]: {len(s)} characters, at most {limits.max_chars}")
        if "\n" in s or "\r" in s:
            raise BadRequest(f"sentences[{i}]: one sentence per item, without line breaks")


def translate_job(
    req: TranslateRequest, defaults: DecodeConfig, limits: Limits, non_autoregressive: bool = False
) -> TranslateJob:
    """The decode job of a validated body, or BadRequest naming the field. A
    `non_autoregressive` model takes the mask-predict settings only, the others the rest."""
    check_sentences(req.sentences, limits)
    body = req.model_dump()
    given = {_SETTING[k]: v for k, v in body.items() if k in _SETTING and v is not None}
    if non_autoregressive:
        return TranslateJob(list(req.sentences), _mask_predict(req, body, defaults, given, limits))
    if req.mode == SearchMode.MASK_PREDICT.value or any(body[k] is not None for k in _NAT_ONLY):
        field = "mode" if req.mode == SearchMode.MASK_PREDICT.value else next(
            k for k in _NAT_ONLY if body[k] is not None)  # fmt: skip
        raise BadRequest(f"{field}: a mask-predict setting; this model is autoregressive")
    if req.mode is not None:
        given["mode"] = SearchMode(req.mode)
    cfg = dataclasses.replace(defaults, **given)
    if cfg.mode not in (SearchMode.GREEDY, SearchMode.BEAM, SearchMode.SAMPLE):
        cfg = dataclasses.replace(cfg, mode=SearchMode.BEAM)  # a recipe default not served here
    if cfg.beam_size > limits.max_beam:
        raise BadRequest(f"beam: {cfg.beam_size}, at most {limits.max_beam}")
    if cfg.nbest > limits.max_nbest:
        raise BadRequest(f"nbest: {cfg.nbest}, at most {limits.max_nbest}")
    if cfg.mode is SearchMode.GREEDY and cfg.nbest > 1:
        raise BadRequest(f"nbest: {cfg.nbest} needs mode beam or sample; greedy gives one")
    if cfg.mode is SearchMode.BEAM and cfg.nbest > cfg.beam_size:
        raise BadRequest(f"nbest: {cfg.nbest} exceeds the beam ({cfg.beam_size}); raise beam")
    if req.constraints is not None:
        _check_constraints(req.constraints, len(req.sentences), cfg, limits)
    return TranslateJob(list(req.sentences), cfg, req.constraints)


def _mask_predict(
    req: TranslateRequest, body: dict, defaults: DecodeConfig, given: dict, limits: Limits
) -> DecodeConfig:
    """The settings of a request to a non-autoregressive model (mask-predict)."""
    if req.mode not in (None, SearchMode.MASK_PREDICT.value):
        raise BadRequest(
            f"mode: {req.mode}: this model is non-autoregressive; it decodes with mask-predict"
        )
    wrong = [k for k in _AR_ONLY if body[k] is not None]
    if wrong:
        raise BadRequest(
            f"{wrong[0]}: not a mask-predict setting (its settings: iterations, length_beam, "
            "nbest, max_len_a, max_len_b, min_len)"
        )
    cfg = dataclasses.replace(defaults, **given, mode=SearchMode.MASK_PREDICT)
    if cfg.iterations > limits.max_iterations:
        raise BadRequest(f"iterations: {cfg.iterations}, at most {limits.max_iterations}")
    if cfg.length_beam > limits.max_beam:
        raise BadRequest(f"length_beam: {cfg.length_beam}, at most {limits.max_beam}")
    fixed = cfg.length_ratio > 0 or cfg.length is not NatLength.PREDICT
    most = 1 if fixed else cfg.length_beam
    if cfg.nbest > most:
        raise BadRequest(f"nbest: {cfg.nbest} exceeds the {most} length candidate(s); raise "
                         "length_beam")  # fmt: skip
    return cfg


def _check_constraints(cons: list[list[str]], n: int, cfg: DecodeConfig, limits: Limits) -> None:
    if cfg.mode is not SearchMode.BEAM:
        raise BadRequest(f"constraints: need mode beam, not {cfg.mode.value}")
    if len(cons) != n:
        raise BadRequest(f"constraints: {len(cons)} lists for {n} sentences; give one per sentence")
    for i, phrases in enumerate(cons):
        if len(phrases) > MAX_PHRASES:
            raise BadRequest(f"constraints[{i}]: {len(phrases)} phrases, at most {MAX_PHRASES}")
        if any(len(p) > limits.max_chars for p in phrases):
            raise BadRequest(f"constraints[{i}]: a phrase over {limits.max_chars} characters")


def fill_job(req: FillMaskRequest, default_topk: int, limits: Limits) -> FillJob:
    check_sentences(req.sentences, limits)
    topk = req.topk if req.topk is not None else default_topk
    if topk > limits.max_topk:
        raise BadRequest(f"topk: {topk}, at most {limits.max_topk}")
    return FillJob(list(req.sentences), topk)

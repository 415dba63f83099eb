"""`tfcli decode --engine ctranslate2`: the same lines in, lines out as `translate.Translator`,
searched by CTranslate2 on an exported directory (tfcli.export.ctranslate2).

The interface is Translator's (`translate`, `translate_chunk`, `stats`, `rows_per_sentence`), so
the decode command only picks one. What stays tfcli's: tokenizing (ids + </s>, cut to the
model's positions), blank lines in = blank out, input order, the per-sentence length limit
`floor(max_len_a * src_len + max_len_b)` (sentences are grouped by their limit, since
CTranslate2 takes one per call), <pad> <s> <mask> never generated, and detokenizing. The search
itself is CTranslate2's: beam (stops with `beam` finished hypotheses, like tfcli and fairseq),
greedy (beam 1), or sampling (top-k / top-p / temperature; its own random generator, so samples
differ from tfcli's for the same seed). A hypothesis that reaches the length limit ends there
without the forced </s> tfcli scores, so its score (not its tokens) differs.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from time import perf_counter

from tfcli.decoding.search import Hypothesis
from tfcli.decoding.translate import Stats, Translation, collect, encode_sources
from tfcli.errors import CheckpointError, TfcliError
from tfcli.recipe.schema import DecodeConfig, SearchMode
from tfcli.textio import iter_chunks
from tfcli.tokenizer.vocab import SPECIALS, load_tokenizer

NEVER_GENERATED = [[SPECIALS[0]], [SPECIALS[2]], [SPECIALS[4]]]  # <pad> <s> <mask>
COMPUTE_TYPES = ("default", "int8", "int8_float32", "int16", "float16", "bfloat16", "float32")


def pick_ct2_device(wanted: str) -> str:
    """auto -> cuda when CTranslate2 sees a GPU, else cpu; mps has no CTranslate2 backend."""
    import ctranslate2

    if wanted == "mps":
        raise TfcliError(
            "--device mps: CTranslate2 runs on cpu or cuda; use --engine torch for mps"
        )
    if wanted == "auto":
        return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    if wanted == "cuda" and ctranslate2.get_cuda_device_count() == 0:
        raise TfcliError("--device cuda: CTranslate2 sees no CUDA device; use --device cpu")
    return wanted


class CTranslate2Translator:
    """An exported CTranslate2 directory, its tokenizers and the decode settings."""

    def __init__(
        self,
        directory: Path,
        record: dict,
        cfg: DecodeConfig,
        *,
        device: str = "cpu",
        threads: int = 0,
        compute_type: str = "default",
    ) -> None:
        import ctranslate2

        from tfcli.model.config import ModelSpec

        if record.get("target") != "ctranslate2":
            raise CheckpointError(
                f"{directory} is a {record.get('target')} export; --engine ctranslate2 needs "
                "one made with `tfcli export ... --to ctranslate2` (or a tfcli checkpoint)"
            )
        files = record["tokenizer"].get("files") or {}
        self.src_tok = load_tokenizer(Path(directory) / str(files.get("src")))
        self.tgt_tok = load_tokenizer(Path(directory) / str(files.get("tgt")))
        self.max_positions = ModelSpec.from_dict(record["model"]).max_positions
        self.cfg = cfg
        self.stats = Stats()
        self.device = device
        self.translator = ctranslate2.Translator(
            str(directory), device=device, compute_type=compute_type, intra_threads=threads
        )
        if cfg.mode is SearchMode.SAMPLE:
            ctranslate2.set_random_seed(cfg.seed)
        self._tgt_ids = self.tgt_tok.get_vocab(with_added_tokens=True)

    @property
    def rows_per_sentence(self) -> int:
        if self.cfg.mode is SearchMode.BEAM:
            return self.cfg.beam_size
        return self.cfg.nbest if self.cfg.mode is SearchMode.SAMPLE else 1

    def translate(self, lines: Iterable[str], chunk_size: int = 2000) -> Iterator[Translation]:
        start = 0
        for chunk in iter_chunks(lines, chunk_size):
            yield from self.translate_chunk(chunk, start)
            start += len(chunk)

    def limit(self, src_len: int) -> int:
        """Output tokens allowed for a source of `src_len` ids (</s> included), as
        tfcli.decoding.search.max_lengths computes it."""
        c = self.cfg
        if c.min_len > self.max_positions - 1:
            raise TfcliError(
                f"min_len {c.min_len} exceeds the longest output the model can produce "
                f"({self.max_positions - 1} tokens, model.max_positions - 1); lower --min-len"
            )
        n = max(math.floor(c.max_len_a * src_len + c.max_len_b), c.min_len, 1)
        return min(n, self.max_positions - 1)

    def translate_chunk(
        self, lines: list[str], start: int = 0, phrases: list | None = None
    ) -> list[Translation]:
        """Translations of `lines` (input order); `start` is the index of the first line.
        `phrases` (constraints) is Translator's argument; CTranslate2 has no such search."""
        if phrases is not None:
            raise TfcliError(
                "--constraints needs --engine torch; CTranslate2 has no constrained beam"
            )
        began = perf_counter()
        src_ids = encode_sources(self.src_tok, lines, self.max_positions - 1, self.stats)
        hyps: list[list[Hypothesis]] = [[Hypothesis([], 0.0)] for _ in lines]
        groups: dict[int, list[int]] = defaultdict(list)
        for i, line in enumerate(lines):
            if line.strip():  # blank in, blank out
                groups[self.limit(len(src_ids[i]))].append(i)
        for limit, rows in groups.items():
            for i, h in zip(rows, self.search([src_ids[i] for i in rows], limit), strict=True):
                hyps[i] = h
        out = collect(lines, start, src_ids, hyps, self.tgt_tok, self.stats)
        self.stats.seconds += perf_counter() - began
        return out

    def search(self, sources: list[list[int]], limit: int) -> list[list[Hypothesis]]:
        """Per source (ids + </s>) its hypotheses, best first, at most `limit` tokens each."""
        c = self.cfg
        pieces = [
            [self.src_tok.id_to_token(t) for t in ids[:-1]] for ids in sources
        ]  # CT2 adds </s>
        opts = dict(
            max_decoding_length=limit, min_decoding_length=c.min_len,
            no_repeat_ngram_size=c.no_repeat_ngram, suppress_sequences=NEVER_GENERATED,
            return_scores=True, max_input_length=0, batch_type="tokens",
            max_batch_size=max(1, c.max_tokens // self.rows_per_sentence),
        )  # fmt: skip
        if c.mode is SearchMode.BEAM:
            results = self.translator.translate_batch(
                pieces, beam_size=c.beam_size, length_penalty=c.length_penalty,
                num_hypotheses=c.nbest, **opts,
            )  # fmt: skip
            return [self._hypotheses(r) for r in results]
        if c.mode is SearchMode.GREEDY:
            results = self.translator.translate_batch(
                pieces, beam_size=1, length_penalty=0.0, **opts
            )
            return [self._hypotheses(r) for r in results]
        n = c.nbest
        repeated = [p for p in pieces for _ in range(n)]
        results = self.translator.translate_batch(
            repeated, beam_size=1, length_penalty=0.0, sampling_topk=c.top_k,
            sampling_topp=c.top_p, sampling_temperature=c.temperature, **opts,
        )  # fmt: skip
        flat = [self._hypotheses(r)[0] for r in results]
        groups = [flat[i * n : (i + 1) * n] for i in range(len(pieces))]
        return [sorted(g, key=lambda h: -h.score) for g in groups]

    def _hypotheses(self, result) -> list[Hypothesis]:
        ids = self._tgt_ids
        return [
            Hypothesis([ids[p] for p in tokens], float(score))
            for tokens, score in zip(result.hypotheses, result.scores, strict=True)
        ]


# --- what `tfcli decode --engine ctranslate2` opens ---------------------------------------------


def engine_input(checkpoints: tuple[Path, ...], opts: dict) -> tuple[Path, dict]:
    """(source, meta): an export directory and its tfcli.json, or a resolved checkpoint and its
    metadata (refused here, before any conversion, when CTranslate2 cannot run it)."""
    from tfcli.checkpoints import files as ckpt
    from tfcli.checkpoints.steps import resolve_checkpoint
    from tfcli.export.meta import read_export
    from tfcli.export.support import check_ctranslate2
    from tfcli.model.config import ModelSpec

    if opts["engine"] != "ctranslate2":
        raise TfcliError(
            "--quantization needs --engine ctranslate2 (the torch engine runs the checkpoint's own weights)"
        )
    if len(checkpoints) != 1:
        raise TfcliError("--engine ctranslate2 decodes one model; ensembles need --engine torch")
    for flag in ("attention", "constraints"):
        if opts.get(flag) is not None:
            raise TfcliError(f"--{flag} needs --engine torch; CTranslate2 does not provide it here")
    record = read_export(checkpoints[0])
    if record is not None:
        if record["kind"] != "seq2seq" or record["target"] != "ctranslate2":
            raise CheckpointError(
                f"{checkpoints[0]} is a {record['target']} export of a {record['kind']} model; "
                "--engine ctranslate2 needs `tfcli export ... --to ctranslate2` of a seq2seq one"
            )
        return Path(checkpoints[0]), record
    path = resolve_checkpoint(checkpoints[0])
    meta = ckpt.read_meta(path)
    if meta.get("kind", "seq2seq") != "seq2seq":
        raise CheckpointError(
            "--engine ctranslate2 translates; this is a masked-LM checkpoint (use --engine torch)"
        )
    check_ctranslate2(ModelSpec.from_dict(meta.get("model")))
    return path, meta


def refuse_export_for_torch(checkpoints: tuple[Path, ...]) -> None:
    """One line when the torch engine is handed an export directory instead of a checkpoint."""
    from tfcli.export.meta import META_NAME

    for c in checkpoints:
        if (Path(c) / META_NAME).is_file() and (Path(c) / "model.bin").is_file():
            raise TfcliError(f"{c} is a CTranslate2 export; decode it with --engine ctranslate2")


def open_engine(source: Path, meta: dict, cfg: DecodeConfig, opts: dict) -> CTranslate2Translator:
    """The engine for `source`: an export dir as it is (--quantization picks the compute type),
    or a checkpoint converted once into the cache at --quantization (default float32)."""
    from tfcli import console
    from tfcli.export.ctranslate2 import _require_ctranslate2, cached_conversion
    from tfcli.export.meta import FORMAT, read_export

    _require_ctranslate2()
    device = pick_ct2_device(opts["device"])
    compute = opts["quantization"] or "default"
    directory = Path(source)
    if meta.get("format") != FORMAT:
        quantization = opts["quantization"] or "float32"
        directory, fresh = cached_conversion(Path(source), quantization)
        if fresh:
            console.step(f"converted {source} to CTranslate2 ({quantization}): {directory}")
    record = read_export(directory)
    assert record is not None  # written by cached_conversion or checked by engine_input
    return CTranslate2Translator(
        directory, record, cfg, device=device, threads=opts["threads"] or 0, compute_type=compute
    )

"""Training subword vocabularies (`tfcli tokenize`): inputs, trainers, streaming, statistics.

What a tfcli vocabulary is (specials at fixed ids, pre-tokenizers, exact round trips) and how an
empty one is built live in `tfcli.tokenizer.vocab`; this module picks a recipe's training files,
streams them into the HF trainer, and saves the result with a record of what it was trained
from (`tfcli.tokenizer.staleness`), so `pipeline` can tell when to retrain.

This module imports `tokenizers` at import time; commands import it lazily.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tokenizers import Tokenizer, pre_tokenizers, trainers

from tfcli import console
from tfcli.errors import DataError, TokenizerError
from tfcli.recipe.schema import DataConfig, PreTokenizer, TokenizerConfig, TokenizerType, Trainer
from tfcli.textio import expand_inputs, undo_on_error
from tfcli.tokenizer.corpus import Corpus, plain_start
from tfcli.tokenizer.staleness import meta_path, write_training_meta
from tfcli.tokenizer.vocab import (
    SPECIALS,
    UNK,
    check_specials,
    empty_tokenizer,
    save_tokenizer,
    special_tokens,
    vocab_txt_path,
)


def training_inputs(data: DataConfig, joint: bool) -> dict[str, list[Path]]:
    """The files a recipe's tokenizer(s) learn from: {"src": [...], "tgt": [...]}.

    Joint: one list with every training text of the recipe (data.src + data.tgt + data.text),
    under both keys, so one vocabulary serves translation and masked-LM pretraining alike.
    Separate: data.src for the source tokenizer, data.tgt for the target one.
    """
    if joint:
        patterns = [*data.src, *data.tgt, *data.text]
        if not patterns:
            raise DataError(
                "no training text to learn a vocabulary from; set data.src/data.tgt (parallel) "
                "or data.text (monolingual) in the recipe, or pass files"
            )
        files = expand_inputs(patterns, "tokenizer input")
        return {"src": files, "tgt": files}
    if not data.src or not data.tgt:
        raise DataError(
            "tokenizer.joint is false, which needs data.src and data.tgt (one vocabulary per "
            "side); set both, or use a joint vocabulary"
        )
    return {"src": expand_inputs(data.src, "data.src"), "tgt": expand_inputs(data.tgt, "data.tgt")}


# --- building and training --------------------------------------------------------------------


def min_vocab_size(cfg: TokenizerConfig) -> int:
    """Smallest vocab_size that holds the specials (+ the 256 byte symbols for byte_level) + 1."""
    alphabet = 256 if cfg.pre_tokenizer is PreTokenizer.BYTE_LEVEL else 0
    return len(SPECIALS) + alphabet + 1


def _check_vocab_size(cfg: TokenizerConfig) -> None:
    need = min_vocab_size(cfg)
    if cfg.vocab_size < need:
        what = f"{len(SPECIALS)} special tokens"
        if cfg.pre_tokenizer is PreTokenizer.BYTE_LEVEL:
            what += " + 256 byte symbols"
        raise TokenizerError(
            f"tokenizer.vocab_size {cfg.vocab_size} is too small: a {cfg.pre_tokenizer.value} "
            f"{cfg.type.value} vocabulary needs at least {need} ({what} + 1 piece); raise it"
        )


def trainer_for(cfg: TokenizerConfig) -> trainers.Trainer:
    """The HF trainer for `cfg`: its model type, vocab_size, min_frequency, specials first."""
    byte_level = cfg.pre_tokenizer is PreTokenizer.BYTE_LEVEL
    # Byte-level vocabularies hold all 256 byte symbols even if unseen: no input is ever <unk>.
    alphabet = pre_tokenizers.ByteLevel.alphabet() if byte_level else []
    common = dict(vocab_size=cfg.vocab_size, special_tokens=special_tokens(), show_progress=False)
    if cfg.type is TokenizerType.BPE:
        return trainers.BpeTrainer(
            min_frequency=cfg.min_frequency, initial_alphabet=alphabet, **common
        )
    if cfg.type is TokenizerType.WORDPIECE:
        return trainers.WordPieceTrainer(
            min_frequency=cfg.min_frequency,
            initial_alphabet=alphabet,
            continuing_subword_prefix="",
            **common,
        )
    # Unigram has no min_frequency: it prunes pieces by likelihood instead.
    return trainers.UnigramTrainer(unk_token="<unk>", initial_alphabet=alphabet, **common)


@dataclass
class TrainStats:
    """What training read; pass one to `train_tokenizer(..., stats=)` to have it filled in."""

    files: list[Path] = field(default_factory=list)
    lines: int = 0
    chars: int = 0
    seconds: float = 0.0
    sample: list[str] = field(default_factory=list)  # every k-th line, k doubling to keep < 4,000
    spm_model: bytes | None = None  # tokenizer.trainer sentencepiece: the .model it learned

    def to_meta(self) -> dict:
        """The "stats" entry of tokenizer.meta.json (what `tfcli inspect` shows)."""
        return {
            "files": len(self.files),
            "lines": self.lines,
            "chars": self.chars,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class TrainResult:
    """One side's trained tokenizer and what it was trained on (from `build_tokenizers`)."""

    tokenizer: Tokenizer
    stats: TrainStats


class _Progress:
    """Lines read so far (rich), then a spinner while the trainer learns the vocabulary."""

    def __init__(self, show: bool, n_files: int, what: str):
        self.progress = None
        self.n_files, self.what = n_files, what
        if show and not console.quiet():
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self.progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TextColumn("[cyan]{task.completed:,} lines"),
                TimeElapsedColumn(),
                console=console.console,
                transient=True,
            )
            self.task = self.progress.add_task("reading", total=None)

    def __enter__(self) -> _Progress:
        if self.progress:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress:
            self.progress.stop()

    def file(self, i: int, path: Path) -> None:
        if self.progress:
            self.progress.update(
                self.task, description=f"reading {path.name} ({i + 1}/{self.n_files})"
            )

    def advance(self, lines: int) -> None:
        if self.progress:
            self.progress.advance(self.task, lines)

    def learning(self) -> None:
        if self.progress:  # the trainer now counts pairs and merges, in Rust, without the GIL
            self.progress.update(self.task, description=f"learning {self.what}")

    def wrap(self, blocks: Iterator[list[str]]) -> Iterator[list[str]]:
        for block in blocks:
            if self.progress:
                self.progress.advance(self.task, len(block))
            yield block
        self.learning()


def train_tokenizer(
    files: list[Path],
    cfg: TokenizerConfig,
    show_progress: bool = True,
    *,
    stats: TrainStats | None = None,
) -> Tokenizer:
    """Train a tokenizer on the lines of `files` (plain or .gz, strict UTF-8) as `cfg` says;
    specials at ids 0..4 (see `tfcli.tokenizer.vocab`). With `stats`, records what was read.

    Raises TokenizerError when cfg.vocab_size cannot hold the specials (and byte alphabet),
    DataError on unreadable/invalid/empty inputs.
    """
    files = [Path(f) for f in files]
    if not files:
        raise DataError(
            "no input files to train a tokenizer on; pass files or set data.* in the recipe"
        )
    _check_vocab_size(cfg)
    what = f"a {cfg.vocab_size:,}-piece {cfg.type.value} vocabulary"
    start = time.perf_counter()
    with _Progress(show_progress, len(files), what) as progress:
        if cfg.trainer is Trainer.SENTENCEPIECE:
            tok, corpus, spm_model = _train_sentencepiece(files, cfg, progress)
        else:
            tok, trainer = empty_tokenizer(cfg), trainer_for(cfg)
            corpus = Corpus(files, cfg.max_lines, progress.file)
            # Lists of lines: the trainer takes each line as one sequence and counts its words in
            # Rust threads. (Joining a block into one long sequence measured no faster; see
            # benchmarks/results/tokenize.md.) Rust buffers only 256 lines ahead, so the line
            # count shown tracks the counting.
            tok.train_from_iterator(progress.wrap(corpus.blocks()), trainer)
            spm_model = None
    if corpus.chars == 0:
        raise DataError(_no_text(files))
    check_specials(tok, "trained tokenizer")  # an invariant of special_tokens(); cheap to verify
    if tok.get_vocab_size() > cfg.vocab_size:
        console.warn(
            f"the vocabulary has {tok.get_vocab_size():,} entries, more than vocab_size "
            f"{cfg.vocab_size:,}: the training text has more distinct characters than that"
        )
    if stats is not None:
        stats.files, stats.lines, stats.chars = files, corpus.lines, corpus.chars
        stats.seconds, stats.sample = time.perf_counter() - start, corpus.sample
        stats.spm_model = spm_model
    return tok


def _train_sentencepiece(
    files: list[Path], cfg: TokenizerConfig, progress: _Progress
) -> tuple[Tokenizer, Corpus, bytes]:
    """sentencepiece learns the vocabulary (it samples max_lines sentences itself, at random
    from all of the input); the .model is converted into an exactly equivalent tokenizer.json."""
    from tfcli.tokenizer.spm import to_tokenizer, train_options, train_spm
    from tfcli.tokenizer.spm_model import parse_model

    options = train_options(cfg)  # its errors come before any reading
    corpus = Corpus(files, 0, progress.file)
    try:
        # Plain files go to sentencepiece by name: its C++ reader is faster than handing it
        # every line from Python (0.4-0.5 s per 20 MB). Other inputs, and files the scan
        # finds are not plain after all, stream through iter_lines (which names a bad line).
        model = _train_by_name(corpus, options, progress) if corpus.by_name() else None
        if model is None:
            corpus = Corpus(files, 0, progress.file)
            model = train_spm(progress.wrap(corpus.blocks()), options)
    except TokenizerError:
        if corpus.chars == 0:  # sentencepiece's own message for this is obscure
            raise DataError(_no_text(files)) from None
        raise
    return to_tokenizer(parse_model(model), "sentencepiece-trained model"), corpus, model


def _train_by_name(corpus: Corpus, options: dict, progress: _Progress) -> bytes | None:
    """sentencepiece reads the files itself while a thread scans them (counts, sample, the
    strict UTF-8 and no-CR check): its C++ training releases the GIL and starts with a
    single-threaded read, so the scan costs no wall time (20 MB: 0.2-0.8 s saved, 200 MB:
    3.8 s). None when a file is not plain: the caller streams it. A file whose first block
    shows it (CR LF, not UTF-8) is caught before training starts; one that turns out not plain
    further on is trained on twice."""
    from tfcli.tokenizer.spm import train_spm_files

    if not all(plain_start(f) for f in corpus.files):
        return None
    plain: list[bool] = []
    failed: list[BaseException] = []

    def scan() -> None:
        try:
            plain.append(corpus.scan(progress.advance))
            progress.learning()
        except BaseException as e:  # (raised in the caller's thread below)
            failed.append(e)

    thread = threading.Thread(target=scan, name="tfcli-scan", daemon=True)
    thread.start()
    model, error = None, None
    try:
        model = train_spm_files(corpus.files, options)
    except TokenizerError as e:
        error = e
    thread.join()
    if failed:
        raise failed[0]
    if not plain[0]:
        return None
    if error is not None:
        raise error
    return model


def _no_text(files: list[Path]) -> str:
    names = ", ".join(str(f) for f in files[:3]) + (" ..." if len(files) > 3 else "")
    return f"no text in {names}: the tokenizer needs at least one non-empty line"


def _keep_spm_model(data: bytes | None, tok_path: Path) -> None:
    """The .model beside a sentencepiece-trained tokenizer (`tfcli encode` encodes with it);
    a stale one beside a tokenizers-trained tokenizer goes."""
    from tfcli.tokenizer.spm import model_path, save_model

    if data is not None:
        save_model(data, tok_path)
    else:
        model_path(tok_path).unlink(missing_ok=True)


def sample_stats(
    tok: Tokenizer, lines: list[str], spm_model: bytes | None = None
) -> dict[str, float]:
    """tokens_per_line, chars_per_token and unk_rate (share of <unk> tokens) over `lines`.

    With `spm_model` (the .model `tok` was converted from, specials at the same ids)
    sentencepiece encodes the sample, 2-3x faster: the same pieces (tfcli.tokenizer.spm) but
    for a line holding a special token's literal text, one piece more or less."""
    if spm_model is not None and lines:
        import sentencepiece as spm

        rows = spm.SentencePieceProcessor(model_proto=spm_model).encode(lines)
    else:
        rows = [e.ids for e in tok.encode_batch_fast(lines, add_special_tokens=False)]
    tokens = sum(map(len, rows))
    unk = sum(r.count(UNK) for r in rows)
    chars = sum(map(len, lines))
    return {
        "tokens_per_line": tokens / max(1, len(lines)),
        "chars_per_token": chars / max(1, tokens),
        "unk_rate": unk / max(1, tokens),
    }


def build_tokenizers(
    inputs: dict[str, list[Path]],
    cfg: TokenizerConfig,
    paths: dict[str, Path],
    show_progress: bool = True,
) -> dict[str, TrainResult]:
    """Train (once when joint), save each tokenizer with its vocab dump, and write the meta file.

    `inputs` and `paths` are keyed "src"/"tgt" (see training_inputs, `RunDir.tokenizers`); when
    the two paths are equal one joint tokenizer is trained. Returns the TrainResult per side.
    """
    results: dict[str, TrainResult] = {}
    for side in ("src", "tgt"):
        if side == "tgt" and paths["tgt"] == paths["src"]:
            results["tgt"] = results["src"]
            continue
        if show_progress and paths["src"] != paths["tgt"]:
            console.step(f"tokenize: {side} side")
        stats = TrainStats()
        tok = train_tokenizer(inputs[side], cfg, show_progress, stats=stats)
        results[side] = TrainResult(tok, stats)
    files = [f for p in paths.values() for f in (p, vocab_txt_path(p), meta_path(p))]
    sides = ["src"] if paths["tgt"] == paths["src"] else ["src", "tgt"]  # joint: one file
    with undo_on_error(*files):  # every file of the set, or none (a full disk half-way)
        for side in sides:
            save_tokenizer(results[side].tokenizer, paths[side])
            _keep_spm_model(results[side].stats.spm_model, paths[side])
        stats = {s: r.stats.to_meta() for s, r in results.items()}
        write_training_meta(paths, inputs, cfg, stats)
    return results

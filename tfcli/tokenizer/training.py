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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tokenizers import Tokenizer, pre_tokenizers, trainers

from tfcli import console
from tfcli.errors import DataError, TokenizerError
from tfcli.recipe.schema import DataConfig, PreTokenizer, TokenizerConfig, TokenizerType, Trainer
from tfcli.textio import expand_inputs, iter_chunks, iter_lines, undo_on_error
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

# Tuning knobs, read at each call (tests lower them to exercise the sampling on small inputs):
BLOCK_LINES = 1024  # lines handed to the trainer per Python -> Rust call
SAMPLE_LINES = 2_000  # at least this many lines (evenly spread) for tokens/line and <unk> rate


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


def _line_budgets(n_files: int, max_lines: int) -> list[int]:
    """max_lines split evenly over the files (0 = no cap), remainder to the first files."""
    if max_lines <= 0:
        return [0] * n_files
    base, extra = divmod(max_lines, n_files)
    return [base + (i < extra) for i in range(n_files)]


class _Corpus:
    """Streams the training lines of `files` in blocks; counts lines and characters and keeps an
    evenly spread sample of lines for the summary statistics.

    With max_lines > 0, training uses the first lines of each file, the budget split evenly over
    the files (a short file passes what it leaves unused to the next), so both sides of a joint
    vocabulary are represented. The first N lines are taken rather than a random sample because
    that needs no second pass over the data.
    """

    def __init__(self, files: list[Path], max_lines: int, on_file: Callable[[int, Path], None]):
        self.files, self.max_lines, self.on_file = files, max_lines, on_file
        self.lines = self.chars = 0
        self.sample: list[str] = []
        self._stride = 1  # every _stride-th line (by global index) is in the sample

    def _keep(self, block: list[str]) -> None:
        self.sample.extend(block[(-self.lines) % self._stride :: self._stride])
        while len(self.sample) >= 2 * SAMPLE_LINES:  # halve: keep multiples of 2 * stride
            self.sample = self.sample[::2]
            self._stride *= 2

    def blocks(self) -> Iterator[list[str]]:
        carry = 0
        budgets = _line_budgets(len(self.files), self.max_lines)
        for i, (path, budget) in enumerate(zip(self.files, budgets, strict=True)):
            cap, n = budget + carry, 0
            if self.max_lines and cap <= 0:
                continue  # max_lines is smaller than the number of files
            self.on_file(i, path)
            lines = iter_lines(path)
            try:
                for block in iter_chunks(lines, BLOCK_LINES):
                    if self.max_lines and n + len(block) > cap:
                        block = block[: cap - n]
                    self._keep(block)
                    self.lines += len(block)
                    self.chars += sum(map(len, block))
                    n += len(block)
                    yield block
                    if self.max_lines and n >= cap:
                        break
            finally:
                lines.close()  # type: ignore[attr-defined]  -- a generator: closes the file now
            carry = cap - n if self.max_lines else 0

    def by_name(self) -> bool:
        """Whether a reader could be given the files by name (no line cap, every file a
        regular file that is not .gz); scan() says whether their contents are plain."""
        return not self.max_lines and not any(_not_by_name(p) for p in self.files)

    def scan(self, advance: Callable[[int], None]) -> bool:
        """Count lines and characters and take the sample straight from the bytes, for a
        reader that reads the files itself (sentencepiece): True when every file is plain
        (not .gz), strict UTF-8 and free of CR (a CR LF line would reach the trainer with
        the CR that iter_lines strips), so the trainer sees exactly what blocks() yields.
        False (counts reset) otherwise: then blocks() reads them, and names a bad line.
        """
        if not self.by_name():
            return False
        for i, path in enumerate(self.files):
            self.on_file(i, path)
            for text in _text_blocks(path):
                if text is None:
                    self.lines = self.chars = 0
                    self.sample, self._stride = [], 1
                    return False
                block = text.split("\n")
                self._keep(block)
                self.lines += len(block)
                self.chars += len(text) - len(block) + 1
                advance(len(block))
        return True


_SCAN_BYTES = 1 << 20
_PROBE_BYTES = 1 << 16


def _not_by_name(path: Path) -> bool:
    """Inputs sentencepiece cannot be given by name: .gz, a pipe or other non-regular file
    (`<(zcat a.gz)` can be read only once), a name with a comma (spm splits its list on them)."""
    return path.suffix == ".gz" or not path.is_file() or "," in str(path)


def _text_blocks(path: Path) -> Iterator[str | None]:
    """The lines of a plain file, about 1 MB at a time, as one string (lines joined by LF, no
    final line break); None (and stop) at invalid UTF-8 or a CR."""
    with open(path, "rb") as f:
        rest = b""
        while data := f.read(_SCAN_BYTES):
            data = rest + data
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                rest = data
                continue
            rest = data[cut:]
            yield _checked(data[: cut - 1])
        if rest:
            yield _checked(rest)


def _checked(raw: bytes) -> str | None:
    if b"\r" in raw:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


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
            corpus = _Corpus(files, cfg.max_lines, progress.file)
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
) -> tuple[Tokenizer, _Corpus, bytes]:
    """sentencepiece learns the vocabulary (it samples max_lines sentences itself, at random
    from all of the input); the .model is converted into an exactly equivalent tokenizer.json."""
    from tfcli.tokenizer.spm import to_tokenizer, train_options, train_spm
    from tfcli.tokenizer.spm_model import parse_model

    options = train_options(cfg)  # its errors come before any reading
    corpus = _Corpus(files, 0, progress.file)
    try:
        # Plain files go to sentencepiece by name: its C++ reader is faster than handing it
        # every line from Python (0.4-0.5 s per 20 MB). Other inputs, and files the scan
        # finds are not plain after all, stream through iter_lines (which names a bad line).
        model = _train_by_name(corpus, options, progress) if corpus.by_name() else None
        if model is None:
            corpus = _Corpus(files, 0, progress.file)
            model = train_spm(progress.wrap(corpus.blocks()), options)
    except TokenizerError:
        if corpus.chars == 0:  # sentencepiece's own message for this is obscure
            raise DataError(_no_text(files)) from None
        raise
    return to_tokenizer(parse_model(model), "sentencepiece-trained model"), corpus, model


def _train_by_name(corpus: _Corpus, options: dict, progress: _Progress) -> bytes | None:
    """sentencepiece reads the files itself while a thread scans them (counts, sample, the
    strict UTF-8 and no-CR check): its C++ training releases the GIL and starts with a
    single-threaded read, so the scan costs no wall time (20 MB: 0.2-0.8 s saved, 200 MB:
    3.8 s). None when a file is not plain: the caller streams it. A file whose first block
    shows it (CR LF, not UTF-8) is caught before training starts; one that turns out not plain
    further on is trained on twice."""
    from tfcli.tokenizer.spm import train_spm_files

    if not all(_plain_start(f) for f in corpus.files):
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


def _plain_start(path: Path) -> bool:
    """Whether the first block of a file is plain (strict UTF-8, no CR): cheap, and it catches
    CR LF and non-UTF-8 files before sentencepiece trains on them."""
    import codecs

    with open(path, "rb") as f:
        head = f.read(_PROBE_BYTES)
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return b"\r" not in head


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

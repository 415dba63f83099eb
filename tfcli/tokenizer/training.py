"""Training subword vocabularies (`tfcli tokenize`): inputs, trainers, sample stats, staleness.

The tokenizer's structure (specials at fixed ids, pre-tokenizers, exact round trips) is
described in `tfcli.tokenizer.vocab`, which also loads and saves them; this module builds an empty
tokenizer from a `TokenizerConfig`, streams the training files into the HF trainer, and records
what a tokenizer was trained from so `pipeline` can tell when it is stale.

This module imports `tokenizers` at import time; commands import it lazily.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    trainers,
)

from tfcli import console
from tfcli.errors import DataError, TokenizerError
from tfcli.recipe.loader import to_dict
from tfcli.recipe.schema import DataConfig, PreTokenizer, TokenizerConfig, TokenizerType
from tfcli.textio import atomic_write_text, expand_inputs, iter_chunks, iter_lines
from tfcli.tokenizer.vocab import (
    META_FORMAT,
    SPACE,
    SPECIALS,
    UNK,
    check_specials,
    file_sha256,
    meta_path,
    read_training_meta,
    save_tokenizer,
)

_BLOCK_LINES = 1024  # lines handed to the trainer per Python -> Rust call
_WP_CHUNK = 100  # longest word WordPiece tokenizes (its default); longer ones are cut first
_SAMPLE_LINES = 2_000  # at least this many lines (evenly spread) for tokens/line and <unk> rate


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


def _specials() -> list[AddedToken]:
    # <mask> eats the spaces around it: the masked word's own word-start marker stands for them.
    return [
        AddedToken(s, special=True, lstrip=s == "<mask>", rstrip=s == "<mask>", normalized=False)
        for s in SPECIALS
    ]


def _empty_tokenizer(cfg: TokenizerConfig) -> Tokenizer:
    """An untrained tokenizer with the model, normaliser, pre-tokenizer and decoder for `cfg`."""
    wordpiece = cfg.type is TokenizerType.WORDPIECE
    if cfg.type is TokenizerType.BPE:
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
    elif wordpiece:
        tok = Tokenizer(
            models.WordPiece(
                unk_token="<unk>", continuing_subword_prefix="", max_input_chars_per_word=_WP_CHUNK
            )
        )
    else:
        tok = Tokenizer(models.Unigram())
    norms = []
    if cfg.nfkc:
        norms.append(normalizers.NFKC())
    if cfg.lowercase:
        norms.append(normalizers.Lowercase())
    if cfg.pre_tokenizer is PreTokenizer.METASPACE:
        norms.append(normalizers.Prepend(SPACE))
        tok.pre_tokenizer = pre_tokenizers.Metaspace(SPACE, prepend_scheme="never", split=True)
        tok.decoder = decoders.Metaspace(SPACE, prepend_scheme="always", split=True)
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = decoders.ByteLevel()
    if wordpiece:
        # WordPiece maps a whole word longer than max_input_chars_per_word to <unk> (and its
        # greedy longest match is quadratic in the word length), so long words (a CJK sentence
        # has no spaces) are cut into chunks of that size first. Decoding stays exact: pieces
        # carry no continuation prefix.
        chunk = pre_tokenizers.Split(Regex(rf"[\s\S]{{1,{_WP_CHUNK}}}"), "isolated")
        tok.pre_tokenizer = pre_tokenizers.Sequence([tok.pre_tokenizer, chunk])
    if norms:
        tok.normalizer = normalizers.Sequence(norms)
    return tok


def _trainer(cfg: TokenizerConfig) -> trainers.Trainer:
    byte_level = cfg.pre_tokenizer is PreTokenizer.BYTE_LEVEL
    # Byte-level vocabularies hold all 256 byte symbols even if unseen: no input is ever <unk>.
    alphabet = pre_tokenizers.ByteLevel.alphabet() if byte_level else []
    common = dict(vocab_size=cfg.vocab_size, special_tokens=_specials(), show_progress=False)
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
class TrainResult:
    """A trained tokenizer and what it was trained on."""

    tokenizer: Tokenizer
    files: list[Path]
    lines: int = 0
    chars: int = 0
    seconds: float = 0.0
    sample: list[str] = field(default_factory=list)  # every k-th line, k doubling to keep < 4,000


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
        while len(self.sample) >= 2 * _SAMPLE_LINES:  # halve: keep multiples of 2 * stride
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
                for block in iter_chunks(lines, _BLOCK_LINES):
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

    def wrap(self, blocks: Iterator[list[str]]) -> Iterator[list[str]]:
        for block in blocks:
            if self.progress:
                self.progress.advance(self.task, len(block))
            yield block
        if self.progress:  # the trainer now counts pairs and merges, in Rust, without the GIL
            self.progress.update(self.task, description=f"learning {self.what}")


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


def train(files: list[Path], cfg: TokenizerConfig, show_progress: bool = True) -> TrainResult:
    """Train a tokenizer on the lines of `files` (plain or .gz, strict UTF-8) as `cfg` says.

    Raises TokenizerError when cfg.vocab_size cannot hold the specials (and byte alphabet),
    DataError on unreadable/invalid/empty inputs.
    """
    files = [Path(f) for f in files]
    if not files:
        raise DataError(
            "no input files to train a tokenizer on; pass files or set data.* in the recipe"
        )
    _check_vocab_size(cfg)
    tok, trainer = _empty_tokenizer(cfg), _trainer(cfg)
    what = f"a {cfg.vocab_size:,}-piece {cfg.type.value} vocabulary"
    start = time.perf_counter()
    with _Progress(show_progress, len(files), what) as progress:
        corpus = _Corpus(files, cfg.max_lines, progress.file)
        # Lists of lines: the trainer takes each line as one sequence and counts its words in Rust
        # threads. (Joining a block into one long sequence measured no faster; see
        # benchmarks/results/tokenize.md.) Rust buffers only 256 lines ahead, so the line count
        # shown tracks the counting.
        tok.train_from_iterator(progress.wrap(corpus.blocks()), trainer)
    if corpus.chars == 0:
        names = ", ".join(str(f) for f in files[:3]) + (" ..." if len(files) > 3 else "")
        raise DataError(f"no text in {names}: the tokenizer needs at least one non-empty line")
    check_specials(tok, "trained tokenizer")  # an invariant of _specials(); cheap to verify
    if tok.get_vocab_size() > cfg.vocab_size:
        console.warn(
            f"the vocabulary has {tok.get_vocab_size():,} entries, more than vocab_size "
            f"{cfg.vocab_size:,}: the training text has more distinct characters than that"
        )
    return TrainResult(
        tok, files, corpus.lines, corpus.chars, time.perf_counter() - start, corpus.sample
    )


def train_tokenizer(
    files: list[Path], cfg: TokenizerConfig, show_progress: bool = True
) -> Tokenizer:
    """Train a tokenizer on `files` as `cfg` says; specials at ids 0..4 (see module docstring)."""
    return train(files, cfg, show_progress).tokenizer


def sample_stats(tok: Tokenizer, lines: list[str]) -> dict[str, float]:
    """tokens_per_line, chars_per_token and unk_rate (share of <unk> tokens) over `lines`."""
    encodings = tok.encode_batch(lines, add_special_tokens=False) if lines else []
    tokens = sum(len(e.ids) for e in encodings)
    unk = sum(e.ids.count(UNK) for e in encodings)
    chars = sum(map(len, lines))
    return {
        "tokens_per_line": tokens / max(1, len(lines)),
        "chars_per_token": chars / max(1, tokens),
        "unk_rate": unk / max(1, tokens),
    }


# --- staleness: what a tokenizer was trained from --------------------------------------------


def training_fingerprint(files: list[Path], cfg: TokenizerConfig) -> dict:
    """The resolved tokenizer config plus each input's path, size and mtime.

    Two fingerprints are equal exactly when retraining would see the same settings and (barring
    same-size edits within one mtime tick) the same bytes. `tokenizer.path` is left out: it
    says where to find a tokenizer, not how to train one.
    """
    config = to_dict(cfg)
    config.pop("path", None)
    inputs = []
    for f in files:
        st = Path(f).stat()
        inputs.append(
            {"path": str(Path(f).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
        )
    return {"config": config, "inputs": inputs}


def write_training_meta(
    paths: dict[str, Path],
    inputs: dict[str, list[Path]],
    cfg: TokenizerConfig,
    stats: dict | None = None,
) -> Path:
    """Record, beside the tokenizer(s), the fingerprint each side was trained from."""
    sides = {
        side: {
            "tokenizer": paths[side].name,
            "sha256": file_sha256(paths[side]),
            "fingerprint": training_fingerprint(inputs[side], cfg),
        }
        for side in ("src", "tgt")
    }
    meta = {
        "format": META_FORMAT,
        "version": 1,
        "joint": paths["src"] == paths["tgt"],
        "sides": sides,
    }
    if stats is not None:
        meta["stats"] = stats
    target = meta_path(paths["src"])
    atomic_write_text(target, json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    return target


def stale_reason(
    paths: dict[str, Path], inputs: dict[str, list[Path]], cfg: TokenizerConfig
) -> str | None:
    """Why the tokenizer(s) at `paths` must be retrained for `inputs` and `cfg`; None if current.

    `paths` as from tokenizer_paths, `inputs` as from training_inputs.
    """
    for side in ("src", "tgt"):
        if not paths[side].is_file():
            return f"{paths[side]} does not exist"
    meta = read_training_meta(meta_path(paths["src"]))
    if meta is None:
        return f"{meta_path(paths['src'])} is missing or unreadable"
    for side in ("src", "tgt"):
        recorded = (meta.get("sides") or {}).get(side) or {}
        if recorded.get("tokenizer") != paths[side].name:
            return f"{paths[side].name} was not trained with the current tokenizer.joint setting"
        if recorded.get("sha256") != file_sha256(paths[side]):
            return f"{paths[side]} was modified after training"
        now = training_fingerprint(inputs[side], cfg)
        before = recorded.get("fingerprint") or {}
        if before.get("config") != now["config"]:
            old = before.get("config") or {}
            changed = [k for k in now["config"] if old.get(k) != now["config"][k]]
            return "tokenizer settings changed: " + ", ".join(f"tokenizer.{k}" for k in changed)
        if before.get("inputs") != now["inputs"]:
            old_paths = [i.get("path") for i in before.get("inputs") or []]
            if old_paths != [i["path"] for i in now["inputs"]]:
                return f"the {side} training files changed"
            changed = [
                i["path"] for i, j in zip(now["inputs"], before["inputs"], strict=True) if i != j
            ]
            return f"{Path(changed[0]).name} changed since the tokenizer was trained"
    return None


def build_tokenizers(
    inputs: dict[str, list[Path]],
    cfg: TokenizerConfig,
    paths: dict[str, Path],
    show_progress: bool = True,
) -> dict[str, TrainResult]:
    """Train (once when joint), save each tokenizer with its vocab dump, and write the meta file.

    `inputs` and `paths` are keyed "src"/"tgt" (see training_inputs, tokenizer_paths); when the
    two paths are equal one joint tokenizer is trained. Returns the TrainResult per side.
    """
    results: dict[str, TrainResult] = {}
    for side in ("src", "tgt"):
        if side == "tgt" and paths["tgt"] == paths["src"]:
            results["tgt"] = results["src"]
            continue
        if show_progress and paths["src"] != paths["tgt"]:
            console.step(f"tokenize: {side} side")
        results[side] = train(inputs[side], cfg, show_progress)
    for side in ("src", "tgt"):
        save_tokenizer(results[side].tokenizer, paths[side])
    stats = {
        side: {
            "files": len(r.files),
            "lines": r.lines,
            "chars": r.chars,
            "seconds": round(r.seconds, 3),
        }
        for side, r in results.items()
    }
    write_training_meta(paths, inputs, cfg, stats)
    return results

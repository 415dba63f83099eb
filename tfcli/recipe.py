"""YAML recipes -> typed dataclasses.

A recipe has one section per pipeline stage (`data`, `tokenizer`, `model`, `optim`, `train`,
`mlm`, `decode`) and one `run_dir` where every artefact of a run lands. Every field has a default,
so an empty recipe is valid and plain CLI flags can stand in for a file. Parsing uses
`yaml.safe_load` only; problems (unknown keys with a "did you mean", wrong types with the YAML
path and the expected type) are collected and reported together in one `RecipeError`.

Dotted overrides (`train.max_steps=100`) are applied to the raw mapping before validation, so
they are checked exactly like the file's own values.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from tfcli.errors import RecipeError


def _f(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field with a one-line help text (used by docs and `tfcli validate`)."""
    if isinstance(default, list):
        return field(default_factory=lambda d=default: list(d), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


# --- closed choices -------------------------------------------------------------------------


class TokenizerType(str, enum.Enum):
    BPE = "bpe"
    WORDPIECE = "wordpiece"
    UNIGRAM = "unigram"


class PreTokenizer(str, enum.Enum):
    METASPACE = "metaspace"  # sentencepiece-style: spaces become '▁', decoding restores them
    BYTE_LEVEL = "byte_level"  # GPT-2 style: never an unknown token


class Activation(str, enum.Enum):
    RELU = "relu"
    GELU = "gelu"


class NormPosition(str, enum.Enum):
    POST = "post"  # as in the paper: x = norm(x + sublayer(x))
    PRE = "pre"  # x = x + sublayer(norm(x)), with a final norm


class Positions(str, enum.Enum):
    SINUSOIDAL = "sinusoidal"
    LEARNED = "learned"
    ROTARY = "rotary"


class OptimizerName(str, enum.Enum):
    ADAM = "adam"
    ADAMW = "adamw"


class Schedule(str, enum.Enum):
    INVERSE_SQRT = "inverse_sqrt"  # the paper's warmup then 1/sqrt(step) decay
    COSINE = "cosine"
    CONSTANT = "constant"


class Device(str, enum.Enum):
    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"
    MPS = "mps"


class Precision(str, enum.Enum):
    AUTO = "auto"  # bf16 autocast on CUDA, fp32 elsewhere
    FP32 = "fp32"
    BF16 = "bf16"


class Packing(str, enum.Enum):
    BLOCKS = "blocks"  # concatenate sentences and cut into blocks of max_len tokens
    SENTENCES = "sentences"  # one sentence per example


class SearchMode(str, enum.Enum):
    GREEDY = "greedy"
    BEAM = "beam"
    SAMPLE = "sample"


# --- sections --------------------------------------------------------------------------------


@dataclass
class DataConfig:
    """Raw text inputs. Files accept globs and .gz; parallel files are line-aligned."""

    src: list[str] = _f([], "training source files (parallel data)")
    tgt: list[str] = _f([], "training target files, line-aligned with src")
    valid_src: list[str] = _f([], "validation source files")
    valid_tgt: list[str] = _f([], "validation target files")
    test_src: list[str] = _f([], "test source files (decoded by quickstart)")
    test_tgt: list[str] = _f([], "test references")
    text: list[str] = _f([], "monolingual training text (pretrain-mlm)")
    valid_text: list[str] = _f([], "monolingual validation text")
    min_len: int = _f(1, "drop examples with fewer tokens than this (either side)")
    max_len: int = _f(256, "drop examples with more tokens than this (either side)")
    max_len_ratio: float = _f(0.0, "drop pairs whose length ratio exceeds this; 0 = off")


@dataclass
class TokenizerConfig:
    """Subword vocabulary, trained with HuggingFace tokenizers."""

    type: TokenizerType = _f(TokenizerType.BPE, "bpe | wordpiece | unigram")
    vocab_size: int = _f(8000, "target vocabulary size, special tokens included")
    min_frequency: int = _f(2, "minimum pair/word frequency to enter the vocabulary")
    nfkc: bool = _f(True, "apply NFKC unicode normalisation")
    lowercase: bool = _f(False, "lowercase all text")
    pre_tokenizer: PreTokenizer = _f(PreTokenizer.METASPACE, "metaspace | byte_level")
    joint: bool = _f(True, "one vocabulary for source and target")
    path: str | None = _f(None, "use this existing tokenizer.json instead of training one")
    max_lines: int = _f(0, "train on at most this many lines (0 = all)")


@dataclass
class ModelConfig:
    """One Transformer core for seq2seq (encoder + decoder) and MLM (encoder only)."""

    d_model: int = _f(512, "model width")
    n_heads: int = _f(8, "attention heads; must divide d_model")
    d_ff: int = _f(2048, "feed-forward inner width")
    encoder_layers: int = _f(6, "encoder layers")
    decoder_layers: int = _f(6, "decoder layers (ignored by pretrain-mlm)")
    dropout: float = _f(0.1, "dropout on embeddings, sublayer outputs and feed-forward")
    attention_dropout: float = _f(0.0, "dropout on attention weights")
    activation: Activation = _f(Activation.RELU, "relu | gelu")
    norm: NormPosition = _f(NormPosition.POST, "post (paper) | pre")
    positions: Positions = _f(Positions.SINUSOIDAL, "sinusoidal | learned | rotary")
    max_positions: int = _f(1024, "longest sequence the positions support")
    share_embeddings: bool = _f(True, "tie source, target and output embeddings (joint vocab)")
    window: int = _f(0, "local self-attention window (tokens each side); 0 = full attention")
    init_encoder_from: str | None = _f(
        None, "MLM checkpoint whose embeddings+encoder initialise this model"
    )


@dataclass
class OptimConfig:
    """Optimizer and learning-rate schedule."""

    optimizer: OptimizerName = _f(OptimizerName.ADAM, "adam | adamw")
    lr: float = _f(7e-4, "peak learning rate (reached at the end of warmup)")
    betas: list[float] = _f([0.9, 0.98], "Adam betas")
    eps: float = _f(1e-9, "Adam epsilon")
    weight_decay: float = _f(0.0, "weight decay (decoupled for adamw)")
    schedule: Schedule = _f(Schedule.INVERSE_SQRT, "inverse_sqrt | cosine | constant")
    warmup_steps: int = _f(4000, "linear warmup steps")
    min_lr: float = _f(0.0, "floor for the cosine schedule")
    clip_norm: float = _f(1.0, "clip gradients to this global norm; 0 = off")


@dataclass
class TrainConfig:
    """The shared training loop (train and pretrain-mlm)."""

    seed: int = _f(1, "seed for init, batching, dropout and masking")
    max_tokens: int = _f(4096, "token budget per batch (source+target padded tokens)")
    accumulate: int = _f(1, "batches per optimizer update (gradient accumulation)")
    max_steps: int = _f(100000, "stop after this many updates; 0 = no limit")
    max_epochs: int = _f(0, "stop after this many epochs; 0 = no limit")
    max_minutes: float = _f(0.0, "stop after this much wall-clock time; 0 = no limit")
    patience: int = _f(0, "stop after this many evaluations without improvement; 0 = off")
    label_smoothing: float = _f(0.1, "label smoothing for the cross-entropy")
    eval_every: int = _f(1000, "evaluate (and checkpoint) every this many updates")
    eval_bleu: bool = _f(True, "compute BLEU/chrF on greedy output of the validation set")
    eval_max_sentences: int = _f(500, "validation sentences decoded for BLEU; 0 = all")
    save_every: int = _f(0, "checkpoint every this many updates; 0 = at each evaluation")
    keep_last: int = _f(3, "keep this many latest checkpoints (the best is always kept)")
    log_every: int = _f(50, "write a metrics line every this many updates")
    device: Device = _f(Device.AUTO, "auto (cuda, then mps, then cpu) | cpu | cuda | mps")
    precision: Precision = _f(Precision.AUTO, "auto (bf16 on cuda) | fp32 | bf16")
    compile: bool = _f(False, "torch.compile the model")
    tensorboard: bool = _f(False, "also log to TensorBoard in run_dir/tensorboard")
    max_nan_steps: int = _f(5, "stop after this many consecutive non-finite losses")


@dataclass
class MLMConfig:
    """BERT-style masked-LM pretraining."""

    mask_prob: float = _f(0.15, "fraction of eligible tokens selected for prediction")
    replace_mask_prob: float = _f(0.8, "of the selected: replaced by <mask>")
    replace_random_prob: float = _f(0.1, "of the selected: replaced by a random non-special token")
    keep_prob: float = _f(0.1, "of the selected: left unchanged")
    whole_word: bool = _f(False, "select whole words (tokenizer word boundaries)")
    packing: Packing = _f(Packing.BLOCKS, "blocks (pack across sentences) | sentences")
    block_size: int = _f(128, "tokens per example")
    batch_size: int = _f(64, "examples per batch")


@dataclass
class DecodeConfig:
    """Search for `tfcli decode` (and validation BLEU, which is always greedy)."""

    mode: SearchMode = _f(SearchMode.BEAM, "greedy | beam | sample")
    beam_size: int = _f(5, "beam width")
    length_penalty: float = _f(1.0, "score / length**alpha when ranking finished hypotheses")
    max_len_a: float = _f(1.5, "max output length = a * source_length + b")
    max_len_b: int = _f(10, "max output length = a * source_length + b")
    min_len: int = _f(1, "minimum output length (tokens)")
    nbest: int = _f(1, "hypotheses printed per sentence")
    no_repeat_ngram: int = _f(0, "block repeated n-grams of this size; 0 = off")
    temperature: float = _f(1.0, "sampling temperature")
    top_k: int = _f(0, "sample from the k most likely tokens; 0 = off")
    top_p: float = _f(1.0, "nucleus sampling mass; 1.0 = off")
    seed: int = _f(1, "seed for sampling")
    max_tokens: int = _f(8192, "token budget per decoding batch")
    topk_fill: int = _f(5, "candidates shown per <mask> in fill-mask")


@dataclass
class Recipe:
    """A whole run: where artefacts land and how each stage behaves."""

    run_dir: str = _f("runs/default", "every artefact of the run lands here")
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    mlm: MLMConfig = field(default_factory=MLMConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)


SECTIONS = ("data", "tokenizer", "model", "optim", "train", "mlm", "decode")

# --- parsing ---------------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in tp)
    origin = typing.get_origin(tp)
    if origin is list:
        (arg,) = typing.get_args(tp)
        plural = {int: "integers", float: "numbers", str: "strings"}.get(arg, _type_name(arg))
        return f"a list of {plural}"
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _type_name(args[0]) + " or null"
    return {int: "an integer", float: "a number", bool: "true/false", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _coerce(value: Any, tp: Any, path: str, problems: list[str]) -> Any:
    """Check `value` against the annotation `tp`; append a problem and return None on mismatch."""
    bad = f"{path}: expected {_type_name(tp)}, got {value!r}"
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return _coerce(value, inner, path, problems)
    if origin is list:
        (inner,) = typing.get_args(tp)
        if inner is str and isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            problems.append(bad)
            return None
        return [_coerce(v, inner, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            problems.append(bad)
            return None
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads '2e-3' (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    problems.append(bad)
    return None


def _suggest(key: str, valid: list[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    return f" (did you mean '{prefix}{close[0]}'?)" if close else f" (valid: {', '.join(valid)})"


def _build(cls: type, raw: Any, path: str, problems: list[str]) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        problems.append(f"{path or 'recipe'}: expected a mapping of keys, got {raw!r}")
        return cls()
    kwargs = {}
    for key, value in raw.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in fields:
            problems.append(
                f"unknown key '{where}'{_suggest(str(key), list(fields), f'{path}.' if path else '')}"
            )
            continue
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value, where, problems)
        else:
            before = len(problems)
            coerced = _coerce(value, tp, where, problems)
            if len(problems) == before:
                kwargs[key] = coerced
    return cls(**kwargs)


def _check_values(r: Recipe) -> list[str]:
    """Cross-field checks that types alone cannot express."""
    p = []
    positive = {
        "tokenizer.vocab_size": r.tokenizer.vocab_size,
        "model.d_model": r.model.d_model,
        "model.n_heads": r.model.n_heads,
        "model.d_ff": r.model.d_ff,
        "model.encoder_layers": r.model.encoder_layers,
        "model.max_positions": r.model.max_positions,
        "train.max_tokens": r.train.max_tokens,
        "train.accumulate": r.train.accumulate,
        "train.eval_every": r.train.eval_every,
        "train.log_every": r.train.log_every,
        "mlm.block_size": r.mlm.block_size,
        "mlm.batch_size": r.mlm.batch_size,
        "decode.beam_size": r.decode.beam_size,
        "decode.nbest": r.decode.nbest,
        "decode.max_tokens": r.decode.max_tokens,
    }
    p += [f"{k}: must be > 0, got {v}" for k, v in positive.items() if v <= 0]
    if r.model.n_heads > 0 and r.model.d_model % r.model.n_heads:
        p.append(
            f"model.d_model ({r.model.d_model}) must be divisible by model.n_heads ({r.model.n_heads})"
        )
    if (
        r.model.positions is Positions.ROTARY
        and r.model.n_heads > 0
        and (r.model.d_model // r.model.n_heads) % 2
    ):
        p.append("model.positions: rotary needs an even head size (d_model / n_heads)")
    if r.model.share_embeddings and not r.tokenizer.joint:
        p.append("model.share_embeddings: needs tokenizer.joint: true (one vocabulary to share)")
    for k in ("dropout", "attention_dropout"):
        v = getattr(r.model, k)
        if not 0.0 <= v < 1.0:
            p.append(f"model.{k}: must be in [0, 1), got {v}")
    if not 0.0 <= r.train.label_smoothing < 1.0:
        p.append(f"train.label_smoothing: must be in [0, 1), got {r.train.label_smoothing}")
    if len(r.optim.betas) != 2:
        p.append(f"optim.betas: expected two numbers, got {r.optim.betas}")
    if r.optim.lr <= 0:
        p.append(f"optim.lr: must be > 0, got {r.optim.lr}")
    if not 0.0 < r.mlm.mask_prob < 1.0:
        p.append(f"mlm.mask_prob: must be in (0, 1), got {r.mlm.mask_prob}")
    split = (r.mlm.replace_mask_prob, r.mlm.replace_random_prob, r.mlm.keep_prob)
    if any(x < 0 for x in split) or abs(sum(split) - 1.0) > 1e-6:
        p.append(
            "mlm: replace_mask_prob + replace_random_prob + keep_prob must be non-negative and "
            f"sum to 1, got {' + '.join(str(x) for x in split)} = {sum(split):g}"
        )
    if r.decode.temperature <= 0:
        p.append(f"decode.temperature: must be > 0, got {r.decode.temperature}")
    if not 0.0 < r.decode.top_p <= 1.0:
        p.append(f"decode.top_p: must be in (0, 1], got {r.decode.top_p}")
    if len(r.data.src) != len(r.data.tgt) and r.data.src and r.data.tgt:
        p.append(f"data.src has {len(r.data.src)} entries but data.tgt has {len(r.data.tgt)}")
    return p


def parse_override(text: str) -> tuple[list[str], Any]:
    """'train.max_steps=100' -> (['train', 'max_steps'], 100); the value is parsed as YAML."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise RecipeError([f"override '{text}' is not of the form section.key=value"], "--set")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value
    return key.strip().split("."), parsed


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Set dotted keys in a raw recipe mapping (copied), before validation."""
    raw = dict(raw)
    problems = []
    for text in overrides:
        keys, value = parse_override(text)
        node = raw
        for k in keys[:-1]:
            child = node.get(k)
            if child is None:
                child = {}
            elif not isinstance(child, dict):
                problems.append(f"override '{text}': '{k}' is not a section")
                break
            node[k] = dict(child)
            node = node[k]
        else:
            node[keys[-1]] = value
    if problems:
        raise RecipeError(problems, "--set")
    return raw


def from_dict(raw: Any, source: str = "recipe") -> Recipe:
    problems: list[str] = []
    recipe = _build(Recipe, raw, "", problems)
    if not problems:
        problems = _check_values(recipe)
    if problems:
        raise RecipeError(problems, source)
    return recipe


def bundled_dir() -> Path:
    return Path(str(resources.files("tfcli") / "recipes"))


def bundled_names() -> list[str]:
    return sorted(p.stem for p in bundled_dir().glob("*.yaml"))


def resolve_path(name_or_path: str) -> Path:
    """A recipe path, or the name of a bundled recipe (with or without .yaml)."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    bundled = bundled_dir() / (p.name if p.suffix == ".yaml" else f"{p.name}.yaml")
    if p.parent == Path(".") and bundled.is_file():
        return bundled
    names = bundled_names()
    hint = _suggest(p.stem, names) if names else ""
    raise RecipeError(
        [f"no such file, and no bundled recipe of that name{hint}; `tfcli recipes` lists them"],
        str(name_or_path),
    )


def read_raw(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise RecipeError([f"cannot read: {e}"], str(path)) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise RecipeError([f"{where}invalid YAML: {problem}"], str(path)) from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise RecipeError(
            [f"expected a mapping of sections at the top level, got {type(raw).__name__}"],
            str(path),
        )
    return raw


def load(name_or_path: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Load a recipe file (or bundled name; None = all defaults) and apply dotted overrides."""
    raw: dict = {}
    source = "recipe"
    if name_or_path:
        path = resolve_path(name_or_path)
        raw = read_raw(path)
        source = str(name_or_path)
    raw = apply_overrides(raw, list(overrides))
    return from_dict(raw, source)


def to_dict(obj: Any) -> Any:
    """Plain data (enums as their values), ready for YAML or JSON."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, list):
        return [to_dict(v) for v in obj]
    return obj


def to_yaml(recipe: Recipe) -> str:
    return yaml.safe_dump(to_dict(recipe), sort_keys=False, allow_unicode=True)


def field_docs() -> list[tuple[str, str, str, str]]:
    """(dotted key, type, default, help) for every field, in declaration order."""
    rows = []

    def walk(cls: type, prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            key = f"{prefix}{f.name}"
            if dataclasses.is_dataclass(tp):
                walk(tp, key + ".")
                continue
            default = (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            )
            rows.append((key, _type_name(tp), repr(to_dict(default)), f.metadata.get("help", "")))

    walk(Recipe, "")
    return rows

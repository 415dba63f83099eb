"""The recipe's schema: one dataclass per pipeline stage, every field with a default and a help.

`Recipe` holds a section per stage (`data`, `tokenizer`, `model`, `optim`, `train`, `mlm`,
`decode`) and the `run_dir` where every artefact of a run lands. Closed choices are enums, so a
recipe can name only what tfcli implements. The help texts feed the README's recipe reference
(`python -m tfcli.recipe.docgen README.md`).

Reading YAML into these classes (type checks, overrides, cross-field rules) is tfcli.recipe's
job; import the names from there (`from tfcli.recipe import Recipe`), which re-exports them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


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


class Init(str, enum.Enum):
    XAVIER = "xavier"  # xavier_uniform linears, N(0, d_model^-0.5) embeddings (fairseq)
    NORMAL = "normal"  # N(0, 0.02) for every linear and embedding weight (BERT, BART, Marian)


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
    init: Init = _f(Init.XAVIER, "initial weights: xavier (fairseq) | normal = N(0, 0.02) (HF)")
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

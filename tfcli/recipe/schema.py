"""The recipe's schema: one dataclass per pipeline stage, every field with a default and a help.

`Recipe` holds a section per stage (`data`, `tokenizer`, `model`, `optim`, `train`, `mlm`,
`decode`) and the `run_dir` where every artefact of a run lands. Closed choices are enums, so a
recipe can name only what tfcli implements. The help texts feed the README's recipe reference
(`python -m tfcli.recipe.docgen README.md`).

The `model` section's architecture fields are defined once, in tfcli.model.config
(`Architecture`, which ModelSpec shares); this module adds what only training reads. Reading
YAML into these classes (types, overrides, checks) is tfcli.recipe.loader's job.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from tfcli.model.config import Architecture
from tfcli.recipe.parse import knob

# --- closed choices -------------------------------------------------------------------------


class TokenizerType(str, enum.Enum):
    BPE = "bpe"
    WORDPIECE = "wordpiece"
    UNIGRAM = "unigram"


class Trainer(str, enum.Enum):
    TOKENIZERS = "tokenizers"  # HF tokenizers' trainers (bpe, wordpiece, unigram)
    SENTENCEPIECE = "sentencepiece"  # sentencepiece's (bpe, unigram), saved as tokenizer.json


class PreTokenizer(str, enum.Enum):
    METASPACE = "metaspace"  # sentencepiece-style: spaces become '▁', decoding restores them
    BYTE_LEVEL = "byte_level"  # GPT-2 style: never an unknown token


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
    MASK_PREDICT = "mask-predict"  # non-autoregressive checkpoints (decoding/mask_predict.py)


class NatLength(str, enum.Enum):
    PREDICT = "predict"  # the length predictor's length_beam most likely lengths
    TRUNCATE = "truncate"  # decode at the maximum length, cut at the first </s>


# --- sections --------------------------------------------------------------------------------


@dataclass
class DataConfig:
    """Raw text inputs. Files accept globs and .gz; parallel files are line-aligned."""

    src: list[str] = knob([], "training source files (parallel data)")
    tgt: list[str] = knob([], "training target files, line-aligned with src")
    valid_src: list[str] = knob([], "validation source files")
    valid_tgt: list[str] = knob([], "validation target files")
    test_src: list[str] = knob([], "test source files (decoded by quickstart)")
    test_tgt: list[str] = knob([], "test references")
    text: list[str] = knob([], "monolingual training text (pretrain-mlm)")
    valid_text: list[str] = knob([], "monolingual validation text")
    min_len: int = knob(1, "drop examples with fewer tokens than this (either side)")
    max_len: int = knob(256, "drop examples with more tokens than this (either side)")
    max_len_ratio: float = knob(0.0, "drop pairs whose length ratio exceeds this; 0 = off")
    distill_from: str | None = knob(
        None,
        "knowledge distillation: this (autoregressive) checkpoint translates data.src with beam "
        "search and training uses its outputs as targets (cached in run_dir/distill/)",
    )
    weights: list[float] = knob(
        [],
        "one weight per data.src/data.tgt entry: a pair of that corpus is drawn this many times "
        "per epoch on average (5 = oversampled 5x, 0.5 = half of it; fairseq --upsample-primary); "
        "[] = 1 each",
    )
    bpe_dropout: float = knob(
        0.0,
        "BPE-dropout (Provilkov et al. 2020) on the training split: each merge skipped with this "
        "probability, e.g. 0.1; 0 = off; BPE tokenizers only",
    )
    bpe_dropout_copies: int = knob(
        4, "data.bpe_dropout: segmentations of the training split encoded; epoch e reads e mod K"
    )


@dataclass
class TokenizerConfig:
    """Subword vocabulary, trained with HuggingFace tokenizers."""

    type: TokenizerType = knob(TokenizerType.BPE, "bpe | wordpiece | unigram")
    vocab_size: int = knob(8000, "target vocabulary size, special tokens included")
    min_frequency: int = knob(2, "minimum pair/word frequency to enter the vocabulary")
    nfkc: bool = knob(True, "apply NFKC unicode normalisation")
    lowercase: bool = knob(False, "lowercase all text")
    pre_tokenizer: PreTokenizer = knob(PreTokenizer.METASPACE, "metaspace | byte_level")
    joint: bool = knob(True, "one vocabulary for source and target")
    path: str | None = knob(None, "use this existing tokenizer.json instead of training one")
    max_lines: int = knob(0, "train on at most this many lines (0 = all)")
    trainer: Trainer = knob(
        Trainer.TOKENIZERS, "tokenizers | sentencepiece (bpe/unigram, faster on large corpora)"
    )


@dataclass
class ModelConfig(Architecture):
    """One Transformer core for seq2seq (encoder + decoder) and MLM (encoder only)."""

    init_encoder_from: str | None = knob(
        None, "MLM checkpoint whose embeddings+encoder initialise this model"
    )


@dataclass
class OptimConfig:
    """Optimizer and learning-rate schedule."""

    optimizer: OptimizerName = knob(OptimizerName.ADAM, "adam | adamw")
    lr: float = knob(7e-4, "peak learning rate (reached at the end of warmup)")
    betas: list[float] = knob([0.9, 0.98], "Adam betas")
    eps: float = knob(1e-9, "Adam epsilon")
    weight_decay: float = knob(0.0, "weight decay (decoupled for adamw)")
    schedule: Schedule = knob(Schedule.INVERSE_SQRT, "inverse_sqrt | cosine | constant")
    warmup_steps: int = knob(4000, "linear warmup steps")
    min_lr: float = knob(0.0, "floor for the cosine schedule")
    clip_norm: float = knob(1.0, "clip gradients to this global norm; 0 = off")


class Exposure(str, enum.Enum):
    NONE = "none"  # teacher forcing: the decoder always reads the gold prefix
    SCHEDULED_SAMPLING = "scheduled_sampling"  # two-pass, Mihaylova & Martins 2019
    RANDOM_TOKENS = "random_tokens"  # gold inputs replaced by uniformly random tokens


class ExposureSchedule(str, enum.Enum):
    LINEAR = "linear"  # 0 -> exposure_prob over exposure_warmup updates, then constant
    CONSTANT = "constant"  # exposure_prob from the first update


@dataclass
class TrainConfig:
    """The shared training loop (train and pretrain-mlm)."""

    seed: int = knob(1, "seed for init, batching, dropout and masking")
    init_from: str | None = knob(
        None,
        "fine-tune: start from this checkpoint's weights (a run dir: its best) and tokenizer, "
        "with a fresh optimizer, schedule, step, best and patience (--init-from)",
    )
    max_tokens: int = knob(4096, "token budget per batch (source+target padded tokens)")
    accumulate: int = knob(1, "batches per optimizer update (gradient accumulation)")
    max_steps: int = knob(100000, "stop after this many updates; 0 = no limit")
    max_epochs: int = knob(0, "stop after this many epochs; 0 = no limit")
    max_minutes: float = knob(0.0, "stop after this much wall-clock time; 0 = no limit")
    patience: int = knob(0, "stop after this many evaluations without improvement; 0 = off")
    label_smoothing: float = knob(0.1, "label smoothing for the cross-entropy")
    eval_every: int = knob(1000, "evaluate (and checkpoint) every this many updates")
    eval_bleu: bool = knob(True, "compute BLEU/chrF on greedy output of the validation set")
    eval_max_sentences: int = knob(500, "validation sentences decoded for BLEU; 0 = all")
    save_every: int = knob(0, "checkpoint every this many updates; 0 = at each evaluation")
    keep_last: int = knob(3, "keep this many latest checkpoints (the best is always kept)")
    log_every: int = knob(50, "write a metrics line every this many updates")
    device: Device = knob(Device.AUTO, "auto (cuda, then mps, then cpu) | cpu | cuda | mps")
    precision: Precision = knob(Precision.AUTO, "auto (bf16 on cuda) | fp32 | bf16")
    compile: bool = knob(False, "torch.compile the model")
    tensorboard: bool = knob(False, "also log to TensorBoard in run_dir/tensorboard")
    max_nan_steps: int = knob(5, "stop after this many consecutive non-finite losses")
    exposure: Exposure = knob(
        Exposure.NONE,
        "none (teacher forcing) | scheduled_sampling (feed the model's own predictions, "
        "Mihaylova & Martins 2019) | random_tokens; seq2seq training only",
    )
    exposure_prob: float = knob(0.25, "peak probability of replacing a gold decoder input")
    exposure_schedule: ExposureSchedule = knob(
        ExposureSchedule.LINEAR, "linear (0 -> exposure_prob over exposure_warmup) | constant"
    )
    exposure_warmup: int = knob(10000, "updates over which the linear schedule reaches the peak")
    length_loss_weight: float = knob(
        0.1, "model.decoder: non_autoregressive: weight of the length predictor's loss (fairseq)"
    )
    guided_attention: float = knob(
        0.0,
        "weight of the guided-attention loss pulling cross-attention toward the diagonal "
        "(Tachibana et al. 2017); 0 = off; seq2seq training only",
    )
    guided_attention_width: float = knob(
        0.2, "g: width of the diagonal band, as a fraction of the lengths (0.2 as the paper)"
    )
    guided_attention_layers: list[int] = knob(
        [-1], "decoder layers whose cross-attention is guided, from 1; negative = from the last"
    )
    guided_attention_decay: int = knob(
        0, "updates over which the guided weight fades linearly to 0; 0 = constant"
    )


@dataclass
class MLMConfig:
    """BERT-style masked-LM pretraining."""

    mask_prob: float = knob(0.15, "fraction of eligible tokens selected for prediction")
    replace_mask_prob: float = knob(0.8, "of the selected: replaced by <mask>")
    replace_random_prob: float = knob(
        0.1, "of the selected: replaced by a random non-special token"
    )
    keep_prob: float = knob(0.1, "of the selected: left unchanged")
    whole_word: bool = knob(False, "select whole words (tokenizer word boundaries)")
    packing: Packing = knob(Packing.BLOCKS, "blocks (pack across sentences) | sentences")
    block_size: int = knob(128, "tokens per example")
    batch_size: int = knob(64, "examples per batch")


@dataclass
class DecodeConfig:
    """Search for `tfcli decode` (and validation BLEU: greedy, mask-predict for NAT models)."""

    mode: SearchMode = knob(
        SearchMode.BEAM,
        "greedy | beam | sample | mask-predict (non-autoregressive checkpoints, their default)",
    )
    beam_size: int = knob(5, "beam width")
    length_penalty: float = knob(1.0, "score / length**alpha when ranking finished hypotheses")
    max_len_a: float = knob(1.5, "max output length = a * source_length + b")
    max_len_b: int = knob(10, "max output length = a * source_length + b")
    min_len: int = knob(1, "minimum output length (tokens)")
    nbest: int = knob(1, "hypotheses printed per sentence")
    no_repeat_ngram: int = knob(0, "block repeated n-grams of this size; 0 = off")
    temperature: float = knob(1.0, "sampling temperature")
    top_k: int = knob(0, "sample from the k most likely tokens; 0 = off")
    top_p: float = knob(1.0, "nucleus sampling mass; 1.0 = off")
    seed: int = knob(1, "seed for sampling")
    max_tokens: int = knob(8192, "token budget per decoding batch")
    topk_fill: int = knob(5, "candidates shown per <mask> in fill-mask")
    iterations: int = knob(
        10, "mask-predict: refinement passes T; 1 = one-shot (non-autoregressive)"
    )
    length_beam: int = knob(5, "mask-predict: most likely lengths decoded side by side")
    force_iterations: bool = knob(
        False, "mask-predict: run all T passes; false = a sentence stops once a pass changes none "
        "of its tokens"
    )  # fmt: skip
    length: NatLength = knob(
        NatLength.PREDICT, "mask-predict: predict (length predictor) | truncate (max, cut at </s>)"
    )
    length_ratio: float = knob(
        0.0, "mask-predict: output length = round(ratio * source length); 0 = off"
    )


@dataclass
class Recipe:
    """A whole run: where artefacts land and how each stage behaves."""

    run_dir: str = knob("runs/default", "every artefact of the run lands here")
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    mlm: MLMConfig = field(default_factory=MLMConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)


SECTIONS = ("data", "tokenizer", "model", "optim", "train", "mlm", "decode")

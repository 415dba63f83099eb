"""The checkpoint's own tokenizer as a transformers PreTrainedTokenizerFast.

tfcli tokenizers carry no post-processor: collate adds the specials (a source is `ids + [</s>]`,
a masked-LM example `[<s>] + ids + [</s>]`). An HF tokenizer adds them itself, so the export sets
a TemplateProcessing post-processor that adds exactly those, names the specials at their fixed
ids (<pad> <unk> <s> </s> <mask> = 0-4), and turns off HF's space clean-up on decoding, which
tfcli's exact round trip does not do. `tokenizer(line).input_ids` is then tfcli's source ids and
`tokenizer.decode(ids, skip_special_tokens=True)` tfcli's detokenized text.
"""

from __future__ import annotations

from tokenizers import Tokenizer, processors

from tfcli.tokenizer.vocab import BOS, EOS, SPECIALS

SPECIAL_NAMES = dict(
    pad_token=SPECIALS[0], unk_token=SPECIALS[1], bos_token=SPECIALS[2], eos_token=SPECIALS[3],
    mask_token=SPECIALS[4],
)  # fmt: skip


def post_processor(masked_lm: bool) -> processors.TemplateProcessing:
    """`$A </s>` (a translation source, as collate frames it) or `<s> $A </s>` (masked LM)."""
    bos, eos = SPECIALS[BOS], SPECIALS[EOS]
    specials = [(bos, BOS), (eos, EOS)]
    if masked_lm:
        return processors.TemplateProcessing(
            single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} $B {eos}", special_tokens=specials
        )
    return processors.TemplateProcessing(
        single=f"$A {eos}", pair=f"$A $B {eos}", special_tokens=specials
    )


def hf_tokenizer(tok: Tokenizer, *, masked_lm: bool, max_length: int):
    """A PreTrainedTokenizerFast over a copy of `tok` (the original is left unchanged).

    max_length: the longest input the model takes, specials included (model_max_length).
    """
    from transformers import PreTrainedTokenizerFast

    copy = Tokenizer.from_str(tok.to_str())
    copy.post_processor = post_processor(masked_lm)
    return PreTrainedTokenizerFast(
        tokenizer_object=copy,
        clean_up_tokenization_spaces=False,
        model_max_length=max_length,
        padding_side="right",
        truncation_side="right",
        **SPECIAL_NAMES,
    )

"""Export: a trained tfcli checkpoint as a model other software runs. This package owns the exact
translations of tfcli's weights, tokenizer and decode settings into the Hugging Face
transformers layout (a Marian or Pegasus seq2seq model, a Megatron-BERT or ESM masked LM, a
fast tokenizer that adds the same specials tfcli adds) and into the CTranslate2 format (through
CTranslate2's own converter and quantization), the rules saying which model settings have an
exact equivalent there (anything else is refused with one line, never exported approximately),
and the small metadata file that lets `tfcli decode --engine ctranslate2` use an exported
directory.

    support.py      which settings export where; the one-line refusals
    meta.py         tfcli.json inside every export (what it came from), and the output-dir rules
    hf_tokenizer.py the checkpoint's tokenizer.json as a PreTrainedTokenizerFast (specials mapped)
    hf.py           the weight mapping and `export_hf` (Marian / Pegasus / MegatronBert / Esm)
    ctranslate2.py  the CTranslate2 converter for tfcli checkpoints, `export_ctranslate2`, the cache
"""

"""Tokenizers: the subword vocabularies (BPE, WordPiece, Unigram, via HF tokenizers) that turn
text into ids. This package owns what a tfcli vocabulary is (the fixed special ids every later
stage relies on, exact round trips), how one is trained from a recipe's text, and the record of
what it was trained from that decides when `train` must retrain it.

vocab.py       the vocabulary files: the fixed special ids (<pad> 0, <unk> 1, <s> 2, </s> 3,
               <mask> 4), building an empty tokenizer for a config, load, save (+ a readable
               vocab dump), describe
training.py    which files a recipe trains on, the HF trainer, sample statistics;
               build_tokenizers trains, saves and records (tfcli tokenize)
corpus.py      reading the training text: blocks of lines for the trainer, or a scan beside a
               trainer that reads the files itself, with counts and an even sample
spm.py         sentencepiece as a way to produce a tokenizer.json: training with it
               (tokenizer.trainer: sentencepiece), importing a .model (--from-spm), and the
               conversion that makes HF tokenizers encode exactly as sentencepiece does
spm_model.py   reading a sentencepiece .model file (its protobuf, decoded by hand)
staleness.py   tokenizer.meta.json: what a vocabulary was trained from (settings + input
               fingerprints, its sha256) and why it must be retrained (retrain_reason)
"""

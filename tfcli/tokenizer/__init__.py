"""Tokenizers: subword vocabularies (BPE, WordPiece, Unigram) trained with HF tokenizers.

vocab.py      tokenizer files: load, save (+ a readable vocab dump), describe; the fixed
              special ids (<pad> 0, <unk> 1, <s> 2, </s> 3, <mask> 4)
training.py   train a vocabulary from text files, and decide when it must be retrained
              (what it was trained from is recorded in tokenizer.meta.json)
"""

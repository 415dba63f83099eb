"""Encoded data: raw text -> memory-mapped token-id splits, and reading them back in batches.
This package owns the on-disk split format (what training memory-maps), turning text files into
a split with a tokenizer as fast as the CPUs allow, and the record in each split's meta.json
that decides when it must be re-encoded.

split.py         the split format (<side>.bin ids + <side>.idx offsets + meta.json), its writer,
                 the mmap reader, the token-budget batch sampler, collate
staleness.py     what a split was made from (tokenizer sha256, input fingerprints, filters)
                 and why it must be re-encoded (reencode_reason)
encoding.py      text files -> a split: input checks, length filters, atomic directory
line_encoder.py  the encode hot loop: lines -> ids with a per-word cache
segmenter.py     its native side: the C extension _segment (HF's BPE/Unigram ids, the charsmap)
pool.py          encode jobs run in order in worker processes
subword_dropout.py  BPE-dropout: K seeded random segmentations of the training split
"""

"""Encoded data: raw text -> memory-mapped token-id splits, and reading them back in batches.

split.py         the split format (ids.bin + offsets.idx + meta.json), its writer and mmap
                 reader, the token-budget batch sampler, collate
encoding.py      text files -> a split: input checks, length filters, atomic directory
line_encoder.py  the encode hot loop: lines -> ids with a per-word cache
pool.py          encode jobs run in order in worker processes
"""

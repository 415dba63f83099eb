"""Search over a trained model: greedy, beam, sampling (all on the KV cache) and fill-mask.

Every search takes source ids `src` (B, S) as collate builds them (`ids + [</s>]`, PAD-padded)
and returns results in input order. See docs/ARCHITECTURE.md for the model API it relies on.
"""

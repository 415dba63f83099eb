"""Search over a trained model: greedy, beam, sampling (all on the KV cache) and fill-mask.

Every search takes source ids `src` (B, S) as collate builds them (`ids + [</s>]`, PAD-padded)
and returns results in input order. See docs/ARCHITECTURE.md for the model API it relies on.
"""

from tfcli.decoding._common import Hypothesis, max_lengths
from tfcli.decoding.beam import beam_search
from tfcli.decoding.fill_mask import fill_mask
from tfcli.decoding.greedy import greedy, greedy_hypotheses
from tfcli.decoding.sampling import filter_logits, sample, sample_hypotheses

__all__ = [
    "Hypothesis",
    "beam_search",
    "fill_mask",
    "filter_logits",
    "greedy",
    "greedy_hypotheses",
    "max_lengths",
    "sample",
    "sample_hypotheses",
]

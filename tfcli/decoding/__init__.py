"""Decoding: turning a trained checkpoint's model into outputs, from tensors up to text lines.

Every search takes source ids `src` (B, S) as collate builds them (`ids + [</s>]`, PAD-padded),
runs on the model's KV cache and returns results in input order; `translate` streams text lines
through them chunk by chunk; the rest is what `tfcli decode` reads, writes, scores and draws.
See docs/ARCHITECTURE.md for the model API it relies on.

    search.py          what every search shares: Hypothesis, length limits, token bans, autocast
    greedy.py          single-path search on the cache (greedy; sampling reuses its loop)
    beam.py            batched beam search with length penalty and n-best
    sampling.py        temperature, top-k and nucleus sampling
    fill_mask.py       top-k candidates for every <mask> of a masked-LM
    translate.py       lines -> token-budget batches -> search -> lines, in input order
    inputs.py          where lines come from: a file, a pipe, or a terminal prompt
    outputs.py         text / jsonl records and the --output sink (written atomically)
    metrics.py         sacreBLEU BLEU and chrF, against lists or a reference file
    attention_plot.py  cross-attention heatmaps of one translated line
    ensemble.py        several models searched as one (log of the mean probability per step)
    constraints.py     lexically constrained beam search (dynamic beam allocation), --constraints
    scoring.py         forced decoding: log-probabilities of given translations, perplexity
    mlm_scoring.py     masked-LM masked accuracy and pseudo-perplexity
"""

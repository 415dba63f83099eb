"""Reports: what `tfcli inspect` says about a checkpoint, run, tokenizer or encoded split.

summary.py    any of those paths -> plain data (no model is built)
plotting.py   training curves from metrics.jsonl (matplotlib, written atomically)
"""

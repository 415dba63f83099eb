"""Reports: what `tfcli inspect` says about a checkpoint, run, tokenizer or encoded split.

Everything here reads headers and small files, never builds a model or loads weights, and
returns plain data (or a picture); `tfcli.commands.inspect_cmd` renders it.

    summary.py    any of those paths -> a JSON-ready dict (what `inspect --json` prints)
    plotting.py   training curves from a run's metrics.jsonl (matplotlib, written atomically)
"""

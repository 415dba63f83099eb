"""Serving: a trained checkpoint behind an HTTP JSON API (`tfcli serve`), with FastAPI and uvicorn
from the optional `serve` extra (`pip install 'tfcli[serve]'`).

Requests from concurrent clients are validated (`schemas`: unknown fields, types, bounded sizes),
queued on a bounded queue and decoded together in batches on one worker thread (`batcher`); a
batch runs through the same `Translator` / `MaskFiller` as `tfcli decode` (`engine`), so each
answer equals `tfcli decode`'s output for its sentences, in their order. `app` holds the routes
and the one-line error answers; `server` binds the socket and stops gracefully on SIGTERM/SIGINT
(in-flight requests are answered, queued ones decoded, then exit 0).

    batcher.py   bounded queue + worker thread: collect for a few ms or up to a budget, decode, resolve
    engine.py    the loaded checkpoint(s) and `process`: one decode chunk per group of equal settings
    schemas.py   request bodies, size limits, body -> decode job (BadRequest: one line)
    app.py       FastAPI routes (/translate, /fill-mask, /health), error answers, body-size guard
    server.py    the listening socket and uvicorn with a graceful, exit-0 stop
"""

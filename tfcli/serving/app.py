"""The HTTP API (FastAPI): routes, the answers to bad requests, and the body-size guard.

    POST /translate   {"sentences": [...], "mode", "beam", "nbest", ...}
                      -> {"model", "results": [{"source", "hypotheses": [{"text", "score",
                         "tokens", "ids"}]}]}   (input order; seq2seq checkpoints)
    POST /fill-mask   {"sentences": [...], "topk"} -> {"model", "results": [{"source",
                         "filled", "masks": [[{"id", "token", "prob"}]]}]}   (MLM checkpoints)
    GET  /health      model name, kind, step, decode defaults, queue and batch counts

Every refusal is `{"error": "one line"}`: 400 a setting this model or request cannot take, 404
an unknown path, 413 a body over the byte limit, 422 a malformed body (unknown field, wrong
type, out of range), 503 the queue is full or the server is shutting down (retry later).
Scores are as `tfcli decode --format jsonl` gives them.
"""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tfcli.errors import TfcliError
from tfcli.serving.batcher import Batcher, Closed, QueueFull
from tfcli.serving.engine import Engine
from tfcli.serving.schemas import (
    BadRequest,
    FillMaskRequest,
    Limits,
    TranslateRequest,
    fill_job,
    translate_job,
)


def create_app(engine: Engine, batcher: Batcher, limits: Limits) -> FastAPI:
    """The app; its shutdown closes the batcher after the in-flight requests were answered."""

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        await asyncio.get_running_loop().run_in_executor(None, batcher.close)

    app = FastAPI(title="tfcli serve", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)
    _errors(app)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        s = batcher.stats
        counts = {"queued": batcher.pending, "in_flight": batcher.in_flight,
                  "batches": s.batches, "requests": s.jobs}  # fmt: skip
        return {**engine.health(), **counts}

    @app.post("/translate")
    async def translate(req: TranslateRequest) -> dict[str, Any]:
        if engine.kind != "seq2seq":
            raise BadRequest("this server's checkpoint is a masked LM; POST /fill-mask instead")
        job = translate_job(req, engine.defaults, limits, engine.non_autoregressive)
        results = await _run(batcher, job, engine.source_tokens(job.sentences))
        tok = engine.toks["tgt"]
        return {"model": engine.name, "results": [_translation(r, tok) for r in results]}

    @app.post("/fill-mask")
    async def fill(req: FillMaskRequest) -> dict[str, Any]:
        if engine.kind != "mlm":
            raise BadRequest("this server's checkpoint translates; POST /translate instead")
        job = fill_job(req, engine.defaults.topk_fill, limits)
        results = await _run(batcher, job, engine.source_tokens(job.sentences))
        return {"model": engine.name, "results": [_filled(r) for r in results]}

    return app


async def _run(batcher: Batcher, job: Any, tokens: int) -> list:
    try:
        future = batcher.submit(job, tokens)
    except (QueueFull, Closed) as e:
        raise BadRequest(f"busy: {e}; retry later", 503) from None
    try:
        return await asyncio.wrap_future(future)
    except TfcliError as e:
        raise BadRequest(str(e)) from None


def _translation(r, tok) -> dict[str, Any]:
    hyps = [
        {"text": t, "score": h.score, "tokens": [tok.id_to_token(i) for i in h.tokens],
         "ids": h.tokens}
        for h, t in zip(r.hypotheses, r.texts, strict=True)
    ]  # fmt: skip
    return {"source": r.source, "hypotheses": hyps}


def _filled(r) -> dict[str, Any]:
    masks = [[{"id": i, "token": p, "prob": pr} for i, p, pr in c] for c in r.candidates]
    return {"source": r.source, "filled": r.filled, "masks": masks}


def _errors(app: FastAPI) -> None:
    """Every error body is {"error": one line}."""

    @app.exception_handler(BadRequest)
    async def bad(_: Request, e: BadRequest) -> JSONResponse:
        return _error(e.status, str(e))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        return _error(422, validation_line(e.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http(_: Request, e: StarletteHTTPException) -> JSONResponse:
        return _error(e.status_code, str(e.detail))


def validation_line(errors: list[dict]) -> str:
    """The first pydantic error as `field: message` (+ how many more)."""
    if not errors:
        return "invalid request body"
    first = errors[0]
    loc = [str(x) for x in first.get("loc", ()) if x != "body"]
    where = ".".join(loc) or "body"
    kind = first.get("type", "")
    msg = first.get("msg", "invalid")
    if kind == "extra_forbidden":
        msg = "unknown field; see the API in `tfcli serve --help`"
    elif kind == "json_invalid":
        where, msg = "body", "not valid JSON"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {msg}{more}"


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message.splitlines()[0] if message else "error"}, status)


class BodyLimit:
    """ASGI middleware: a body over `max_bytes` is answered 413 before it is parsed, whether
    announced by Content-Length or streamed in chunks."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or ()).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return await self._refuse(send)
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:  # FastAPI re-raises an HTTPException from the body
                    raise HTTPException(413, f"body: over {self.max_bytes} bytes")
            return message

        await self.app(scope, limited_receive, send)

    async def _refuse(self, send) -> None:
        body = json.dumps({"error": f"body: over {self.max_bytes} bytes"}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})

"""`tfcli serve`: a checkpoint behind an HTTP JSON API (/translate, /fill-mask, /health)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from tfcli import console
from tfcli.errors import TfcliError


def _options(func: Any) -> Any:
    opts = [
        click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface)."),
        click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="TCP port (0: any free port, printed at start)."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default="auto", show_default=True, help="auto: CUDA (bf16 autocast), then MPS, then CPU."),
        click.option("--threads", type=click.IntRange(min=1), help="CPU threads for torch (default: torch's choice)."),
        click.option("--max-wait-ms", type=click.FloatRange(min=0), default=5.0, show_default=True, help="How long the batcher collects requests before decoding them together."),
        click.option("--max-batch-requests", type=click.IntRange(min=1), default=64, show_default=True, help="Most requests decoded together (1: one at a time, no batching)."),
        click.option("--max-batch-tokens", type=click.IntRange(min=1), default=8192, show_default=True, help="Most source tokens collected into one batch."),
        click.option("--max-queue", type=click.IntRange(min=1), default=256, show_default=True, help="Requests waiting beyond this are answered 503 (retry later)."),
        click.option("--max-sentences", type=click.IntRange(min=1), default=64, show_default=True, help="Most sentences in one request."),
        click.option("--max-chars", type=click.IntRange(min=1), default=2000, show_default=True, help="Most characters in one sentence."),
        click.option("--max-body-bytes", type=click.IntRange(min=1), default=1 << 20, show_default=True, help="Largest request body (413 beyond)."),
        click.option("--graceful-seconds", type=click.FloatRange(min=0), default=30.0, show_default=True, help="On SIGTERM/SIGINT: how long in-flight requests may take to finish."),
    ]  # fmt: skip
    for opt in reversed(opts):
        func = opt(func)
    return click.argument(
        "checkpoints", nargs=-1, required=True, type=click.Path(path_type=Path),
        metavar="CHECKPOINT...",
    )(func)  # fmt: skip


@click.command()
@_options
def serve(checkpoints: tuple[Path, ...], **opts: Any) -> None:
    """Serve a checkpoint over HTTP: POST /translate (seq2seq), POST /fill-mask (MLM), GET /health.

    CHECKPOINT is a .safetensors file or a run directory (its best checkpoint); several seq2seq
    checkpoints serve as one ensemble (as `tfcli decode A B`). Requests from concurrent clients
    are collected for up to --max-wait-ms and decoded together; each answer equals `tfcli decode`
    for its sentences, in their order. Unset settings take the checkpoint's decode section.

    \b
    /translate body: {"sentences": [...], "mode": "greedy"|"beam"|"sample", "beam", "nbest",
      "length_penalty", "max_len_a", "max_len_b", "min_len", "no_repeat_ngram", "temperature",
      "top_k", "top_p", "seed", "constraints": [[phrase, ...] per sentence] (beam)}
      a non-autoregressive checkpoint: "mode": "mask-predict", "iterations", "length_beam",
      "nbest", "max_len_a", "max_len_b", "min_len"
    answer: {"model", "results": [{"source", "hypotheses": [{"text", "score", "tokens", "ids"}]}]}
    /fill-mask body: {"sentences": [...], "topk"}; answer: {"model", "results": [{"source",
      "filled", "masks": [[{"id", "token", "prob"}]]}]}
    Refusals are {"error": "one line"}: 400 (setting), 413 (size), 422 (malformed body,
    unknown field), 503 (queue full or shutting down). SIGTERM/SIGINT: stop accepting, answer
    the requests in flight, exit 0.

    \b
    Examples:
      tfcli serve runs/demo-tiny --port 8080
      curl -s localhost:8080/translate -H 'content-type: application/json' \\
           -d '{"sentences": ["three hundred and five"], "beam": 4, "nbest": 2}'
      curl -s localhost:8080/health
      tfcli serve runs/bert-mini --port 8081     # then POST /fill-mask
      tfcli serve runs/nat-demo --port 8082      # mask-predict: {"sentences": [...], "iterations": 4}
      tfcli serve runs/demo-tiny --max-batch-requests 1    # one request at a time
    """
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise TfcliError(f"tfcli serve needs {e.name}: pip install 'tfcli[serve]'") from None
    import torch

    from tfcli.checkpoints import steps as run_checkpoints
    from tfcli.device import pick_device
    from tfcli.serving.app import create_app
    from tfcli.serving.batcher import Batcher
    from tfcli.serving.engine import Engine
    from tfcli.serving.schemas import Limits
    from tfcli.serving.server import bind
    from tfcli.serving.server import serve as run_server

    paths = [run_checkpoints.resolve_checkpoint(c) for c in checkpoints]
    if opts["threads"]:
        torch.set_num_threads(opts["threads"])
    engine = Engine.load(paths, pick_device(opts["device"], setting="--device"))
    sock = bind(opts["host"], opts["port"])
    batcher = Batcher(
        engine.process, max_wait_ms=opts["max_wait_ms"], max_requests=opts["max_batch_requests"],
        max_tokens=opts["max_batch_tokens"], max_queue=opts["max_queue"],
    )  # fmt: skip
    limits = Limits(max_sentences=opts["max_sentences"], max_chars=opts["max_chars"],
                    max_body_bytes=opts["max_body_bytes"])  # fmt: skip
    host, port = sock.getsockname()[:2]
    route = "/fill-mask" if engine.kind == "mlm" else "/translate"
    console.step(f"serve: {engine.name} ({engine.kind}) on http://{host}:{port} "
                 f"(POST {route}, GET /health); Ctrl-C stops")  # fmt: skip
    run_server(create_app(engine, batcher, limits), sock, graceful_seconds=opts["graceful_seconds"])
    batcher.close()
    s = batcher.stats
    console.success(f"stopped: {s.jobs} requests answered in {s.batches} batches")

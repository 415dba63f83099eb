"""Load test of `tfcli serve` on 127.0.0.1: batching vs one request at a time, 1/8/32 clients.

Starts the server as a real process twice with the same checkpoint: batched (the defaults:
requests collected for up to --max-wait-ms, up to 64 per batch) and one-at-a-time
(`--max-batch-requests 1`). For each, 1, 8 and 32 concurrent clients (raw asyncio HTTP/1.1
keep-alive connections in this process) send the same list of one-sentence /translate requests,
each client taking the next unsent one, until every request is answered or --seconds passed.
It reports requests/s, p50/p99 latency, errors, the server's own count of decode batches, and
checks that every request got exactly one answer, for its own sentence (`source`), identical
to the answer the one-at-a-time server gave for it. Each server is stopped with SIGTERM and must exit 0.

    python benchmarks/bench_serve.py                          # random tiny model, demo sentences
    python benchmarks/bench_serve.py --checkpoint runs/demo-tiny --requests 400
    python benchmarks/bench_serve.py --clients 1 8 32 --mode greedy

Without --checkpoint a random model (d_model 128, 2+2 layers, a </s> bias so outputs end at
varied lengths) with a BPE vocabulary trained on the demo corpus is written to a temp dir:
throughput depends on the model's cost, not on what it learned. Results:
benchmarks/results/serve.md (--results).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def make_checkpoint(root: Path, size: str) -> tuple[Path, list[str]]:
    """A random seq2seq checkpoint with a demo-trained tokenizer, and demo test sentences."""
    import torch

    sys.path.insert(0, str(HERE))
    from bench_decode import random_model

    from tfcli.checkpoints.files import save_checkpoint
    from tfcli.demo import make_splits
    from tfcli.recipe import loader
    from tfcli.recipe.schema import TokenizerConfig
    from tfcli.tokenizer.training import train_tokenizer

    splits = make_splits(1, 3000, 0, 400)
    text = root / "text.txt"
    text.write_text("\n".join(s for pair in splits["train"] for s in pair) + "\n", "utf-8")
    tok = train_tokenizer([text], TokenizerConfig(vocab_size=1000, min_frequency=1), False)
    model = random_model(size, tok.get_vocab_size(), 6.0)
    recipe = loader.to_dict(loader.from_dict({"decode": {"beam_size": 4, "max_len_a": 1.2,
                                                         "max_len_b": 5}}))  # fmt: skip
    meta = {"kind": "seq2seq", "model": model.spec.to_dict(), "recipe": recipe, "step": 0,
            "tokenizer": {"joint": True, "src": tok.to_str(), "tgt": tok.to_str()}}  # fmt: skip
    path = root / "random.safetensors"
    save_checkpoint(path, model, meta)
    torch.set_num_threads(1)
    return path, [en for en, _ in splits["test"]]


class Server:
    """`tfcli serve` in a child process; `url` once it listens."""

    def __init__(self, checkpoint: Path, threads: int, extra: list[str]) -> None:
        exe = Path(sys.executable).with_name("tfcli")
        cmd = [str(exe), "serve", str(checkpoint), "--port", "0", "--device", "cpu",
               "--threads", str(threads), *extra]  # fmt: skip
        self.command = "tfcli serve CHECKPOINT " + " ".join(cmd[3:])
        env = {**os.environ, "COLUMNS": "400", "OMP_NUM_THREADS": str(threads)}
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
        self.url = self._wait_url()

    def _wait_url(self) -> str:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            found = re.search(r"http://127\.0\.0\.1:(\d+)", line)
            if found:
                return f"http://127.0.0.1:{found.group(1)}"
            if not line and self.proc.poll() is not None:
                break
        self.proc.kill()
        raise SystemExit(f"bench_serve: the server did not start ({self.command})")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(120)
        self.proc.stderr.close()
        return code


class Connection:
    """One keep-alive HTTP/1.1 connection on raw asyncio streams: a light client, so that the
    benchmark process (on the same machine as the server) does not become the bottleneck."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        data = json.dumps(body).encode() if body is not None else b""
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n")  # fmt: skip
        self.writer.write(head.encode() + data)
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("the server closed the connection")
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        payload = await self.reader.readexactly(length)
        return int(status_line.split()[1]), json.loads(payload)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def load(url: str, bodies: list[dict], clients: int, seconds: float) -> dict:
    """`clients` workers send `bodies` (each once, in list order of taking) -> figures + answers."""
    answers: list = [None] * len(bodies)
    latencies: list[float] = []
    errors = 0
    next_i = 0
    deadline = time.monotonic() + seconds
    probe = Connection(url)
    _, health = await probe.request("GET", "/health")
    await probe.close()  # idle keep-alive connections are closed by the server after 5 s

    async def worker() -> None:
        nonlocal next_i, errors
        conn = Connection(url)
        while next_i < len(bodies) and time.monotonic() < deadline:
            i = next_i
            next_i += 1
            began = time.perf_counter()
            try:
                status, answer = await conn.request("POST", "/translate", bodies[i])
            except (OSError, ValueError, asyncio.IncompleteReadError):
                errors += 1
                await conn.close()
                conn = Connection(url)
                continue
            latencies.append(time.perf_counter() - began)
            if status != 200:
                errors += 1
                continue
            answers[i] = answer["results"]
        await conn.close()

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    wall = time.perf_counter() - began
    probe = Connection(url)
    _, after = await probe.request("GET", "/health")
    await probe.close()
    sent = next_i
    batches = after["batches"] - health["batches"]
    lat = sorted(latencies)
    return {
        "clients": clients, "sent": sent, "answered": sum(a is not None for a in answers),
        "errors": errors, "wall": wall, "rps": sent / wall if wall else 0.0,
        "p50": 1000 * statistics.median(lat) if lat else 0.0,
        "p99": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else 0.0,
        "batches": batches, "per_batch": (after["requests"] - health["requests"]) / max(batches, 1),
        "answers": answers,
    }  # fmt: skip


def check(answers: list, bodies: list[dict], reference: list | None) -> tuple[int, int, int]:
    """(lost, wrong source/order, differing from the reference answer) over the sent requests."""
    lost = wrong = differ = 0
    for i, (a, body) in enumerate(zip(answers, bodies, strict=True)):
        if a is None:
            lost += 1
            continue
        if [r["source"] for r in a] != body["sentences"]:
            wrong += 1
        if reference is not None and reference[i] is not None:
            texts = [[h["text"] for h in r["hypotheses"]] for r in a]
            differ += texts != [[h["text"] for h in r["hypotheses"]] for r in reference[i]]
    return lost, wrong, differ


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--checkpoint", type=Path, help="serve this (default: a random tiny model)")
    p.add_argument("--size", default="tiny", help="random model size (bench_decode.SIZES)")
    p.add_argument("--requests", type=int, default=240, help="requests per point (one sentence)")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--seconds", type=float, default=60.0, help="time limit per point")
    p.add_argument("--mode", default="beam", choices=["beam", "greedy"])
    p.add_argument("--beam", type=int, default=4)
    p.add_argument("--threads", type=int, default=1, help="torch threads of the server")
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument("--results", type=Path, default=HERE / "results" / "serve.md")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        if args.checkpoint is not None:
            checkpoint = args.checkpoint
            sentences = [f"sentence {i}" for i in range(args.requests)]
            demo = Path("demo/test.src")
            if demo.is_file():
                sentences = demo.read_text("utf-8").splitlines()
        else:
            checkpoint, sentences = make_checkpoint(Path(tmp), args.size)
        bodies = [{"sentences": [sentences[i % len(sentences)]], "mode": args.mode}
                  for i in range(args.requests)]  # fmt: skip
        if args.mode == "beam":
            for b in bodies:
                b["beam"] = args.beam
        settings = {
            "one-at-a-time": ["--max-batch-requests", "1"],
            "batched": ["--max-wait-ms", str(args.max_wait_ms)],
        }
        rows, exits, commands, reference = [], {}, {}, None
        for name, extra in settings.items():
            server = Server(checkpoint, args.threads, extra)
            commands[name] = server.command
            try:
                for c in args.clients:
                    fig = asyncio.run(load(server.url, bodies, c, args.seconds))
                    if reference is None and name == "one-at-a-time":
                        reference = fig["answers"]
                    sent = fig["sent"]
                    fig["lost"], fig["wrong"], fig["differ"] = check(
                        fig["answers"][:sent], bodies[:sent], reference
                    )
                    fig["setting"] = name
                    rows.append(fig)
                    print(_row(fig), flush=True)
            finally:
                exits[name] = server.stop()
    write(args, rows, exits, commands)


def _row(f: dict) -> str:
    return (
        f"| {f['setting']} | {f['clients']} | {f['sent']} | {f['rps']:.1f} | {f['p50']:.0f} | "
        f"{f['p99']:.0f} | {f['errors']} | {f['lost']} | {f['wrong']} | {f['differ']} | "
        f"{f['batches']} | {f['per_batch']:.1f} |"
    )


def write(args, rows: list[dict], exits: dict, commands: dict) -> None:
    import torch

    by = {(r["setting"], r["clients"]): r for r in rows}
    ratios = []
    for c in args.clients:
        a, b = by.get(("batched", c)), by.get(("one-at-a-time", c))
        if a and b and b["rps"]:
            ratios.append(f"{c} clients: **{a['rps'] / b['rps']:.2f}x**")
    model = str(args.checkpoint) if args.checkpoint else f"random {args.size} model (demo BPE 1000)"
    lines = [
        "# Serving (benchmarks/bench_serve.py)",
        "",
        "`" + " ".join(["python benchmarks/bench_serve.py", *sys.argv[1:]]) + "`,",
        f"{datetime.date.today().isoformat()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, torch {torch.__version__}, "
        f"load average at the end {os.getloadavg()[0]:.1f}.",
        "",
        f"Model: {model}; {args.requests} one-sentence /translate requests per point, "
        f"mode {args.mode}" + (f" (beam {args.beam})" if args.mode == "beam" else "") + "; "
        f"server with --threads {args.threads} on 127.0.0.1, clients (raw asyncio HTTP/1.1, one keep-alive connection each) in the "
        "benchmark process on the same machine.",
        "",
        *[f"- {name}: `{cmd}`" for name, cmd in commands.items()],
        "",
        "| server | clients | requests | req/s | p50 ms | p99 ms | errors | lost | wrong source "
        "| differ from one-at-a-time | decode batches | requests/batch |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *[_row(r) for r in rows],
        "",
        "Batched / one-at-a-time throughput: " + ", ".join(ratios) + ".",
        "",
        "Server exit codes after SIGTERM: "
        + ", ".join(f"{k} {v}" for k, v in exits.items())
        + " (0 = graceful stop).",
    ]
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines[-4:]))
    print(f"written to {args.results}")


if __name__ == "__main__":
    main()

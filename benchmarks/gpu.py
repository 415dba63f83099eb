"""The GPU check of issue 16: every GPU figure tfcli claims, in one command of at most 8 minutes.

    benchmarks/gpu.sh OUT_DIR              # one CUDA GPU (H100/H200): the real figures
    benchmarks/gpu.sh OUT_DIR --smoke      # any machine, CPU included: tiny shapes, seconds

Parts, each in its own process with its own time budget (a hard timeout), in this order:

1. `tests`        the tests marked gpu (tests/test_cuda.py): bf16 autocast vs fp32, KV cache,
                  dropout, compile, `tfcli train` on CUDA then decode on CPU;
2. `train`        bench_train.py at the transformer-base shape (bf16, fused Adam) vs
                  MarianMTModel with a plain loop on the same token-budget batches, with MFU
                  against the GPU's dense bf16 peak (known for H100/H200, else --peak-tflops);
3. `train_e2e`    `tfcli train transformer-base` for about a minute on a generated corpus
                  (`tfcli demo-data`), with the step-time breakdown of `StepTimer`;
4. `decode`       bench_decode.py: beam 5, batched, vs HF `generate()` on the same weights;
5. `mlm`          bench_mlm.py: BERT-base vs BertForMaskedLM + DataCollatorForLanguageModeling;
6. `train_compile` part 2 with `torch.compile` on both sides (last: compiling is the slowest).

OUT_DIR receives gpu.json (every figure, the environment, each part's status and reason),
gpu.md (the same as markdown), parts/*.json and parts/*.md (each benchmark's own output) and
logs/*.log (each part's stdout and stderr). A part that cannot run (no CUDA device outside
--smoke, the time left too short) is recorded as skipped with its reason; one that fails or
times out is recorded so, and the others still run. The exit status is 0 when no part failed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import importlib.util
import json
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TOTAL_BUDGET_S = 470  # the 8-minute promise, less start-up and the report (--budget)

# Dense bf16 tensor-core peaks (TFLOP/s, without sparsity) from NVIDIA's data sheets; the first
# name contained in torch.cuda.get_device_name() wins, so the specific variants come first.
BF16_PEAK_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM
    ("H200", 989.0),  # same tensor cores as H100 SXM, more and faster memory
)

GOALS = {"train": 2.0, "train_compile": 2.0, "decode": 3.0, "mlm": 2.0}  # tfcli / peer


def peak_tflops(gpu_name: str) -> float | None:
    """The dense bf16 peak of a GPU known by name, else None (MFU is then not reported)."""
    return next((peak for key, peak in BF16_PEAK_TFLOPS if key in gpu_name), None)


# --- the step-time breakdown ---------------------------------------------------------------


class StepTimer:
    """Times every `Trainer.update` of a run from outside the loop (wraps the method).

    Host side (perf_counter): seconds inside each update (collate, host-to-device copies, kernel
    launches) and between updates (the next batch, logging, evaluation, checkpoints). Device
    side, on CUDA: an event recorded on the current stream as each update starts and ends, so
    that `end[i-1] -> start[i]` is how long the GPU sat idle waiting for the host between two
    updates and `start[i] -> end[i]` the update's time on the device. No event is read before
    the run ends, so timing adds no host-device synchronisation to the loop.
    """

    def __init__(self, cuda: bool):
        self.cuda = cuda
        self.host: list[tuple[float, float]] = []  # (start, end) perf_counter of each update
        self.events: list[tuple[Any, Any]] = []

    def install(self) -> None:
        from tfcli.training.loop import Trainer

        update = Trainer.update

        @functools.wraps(update)
        def timed(trainer, micro, deadline=None):
            import torch

            ev = None
            t0 = time.perf_counter()
            if self.cuda:
                ev = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                ev[0].record()
            try:
                return update(trainer, micro, deadline)
            finally:
                if ev is not None:
                    ev[1].record()
                    self.events.append(ev)
                self.host.append((t0, time.perf_counter()))

        Trainer.update = timed

    def breakdown(self) -> dict[str, Any]:
        """Per-update medians and whole-run totals (seconds; the first update, which pays for
        kernel selection and allocation, is left out)."""
        host = self.host[1:]
        if len(host) < 2:
            return {"updates": len(self.host), "reason": "fewer than 3 updates"}
        inside = [b - a for a, b in host]
        between = [host[i + 1][0] - host[i][1] for i in range(len(host) - 1)]
        span = host[-1][1] - host[0][0]
        out: dict[str, Any] = {
            "updates": len(self.host),
            "span_s": span,
            "updates_per_s": (len(host) - 1) / (host[-1][0] - host[0][0]),
            "host_in_update_median_s": statistics.median(inside),
            "host_between_updates_median_s": statistics.median(between),
            "host_between_updates_total_s": sum(between),
            "host_between_updates_max_s": max(between),
            "device": None,
        }
        if self.cuda and len(self.events) == len(self.host):
            import torch

            torch.cuda.synchronize()
            ev = self.events[1:]
            busy = [a.elapsed_time(b) / 1e3 for a, b in ev]
            idle = [ev[i][1].elapsed_time(ev[i + 1][0]) / 1e3 for i in range(len(ev) - 1)]
            device_span = ev[0][0].elapsed_time(ev[-1][1]) / 1e3
            out["device"] = {
                "update_median_s": statistics.median(busy),
                "idle_between_updates_median_s": statistics.median(idle),
                "idle_between_updates_total_s": sum(idle),
                "span_s": device_span,
                # the headline: the share of the run the GPU waited for the host between updates
                "gpu_waits_for_host_fraction": sum(idle) / device_span,
                # above ~1: the update's launches take longer than its kernels (launch-bound)
                "host_over_device_in_update": statistics.median(inside) / statistics.median(busy),
            }
        else:
            out["device_reason"] = "no CUDA events on CPU" if not self.cuda else "events missing"
        return out


def e2e_worker(out: Path, smoke: bool, device: str) -> None:
    """Part 3, in its own process: a generated corpus, then `tfcli train` under a StepTimer."""
    from tfcli.cli import cli

    work = out / "e2e"
    data = work / "data"
    t0 = time.perf_counter()
    size = ["--train", "300", "--valid", "20", "--test", "5", "--mono", "5"] if smoke else [
        "--train", "50000", "--valid", "200", "--test", "50", "--mono", "5",
    ]  # fmt: skip
    cli.main(["demo-data", str(data), *size], standalone_mode=False)
    corpus_s = time.perf_counter() - t0
    sets = [f"data.{k}={data / f}" for k, f in (
        ("src", "train.src"), ("tgt", "train.tgt"), ("valid_src", "valid.src"),
        ("valid_tgt", "valid.tgt"), ("test_src", "test.src"), ("test_tgt", "test.tgt"))]  # fmt: skip
    if smoke:  # the demo recipe, twenty updates
        recipe = "demo-tiny"
        sets += ["tokenizer.vocab_size=300", "model.d_model=32", "model.d_ff=64",
                 "train.max_steps=20", "train.log_every=5", "train.eval_every=10",
                 "train.eval_max_sentences=5", "train.max_tokens=512"]  # fmt: skip
    else:  # the shipped base recipe for one minute: data, logging and checkpoints included
        recipe = "transformer-base"
        sets += ["tokenizer.vocab_size=8000", "train.max_steps=0", "train.max_minutes=1",
                 "train.log_every=50", "train.eval_every=1000000", "train.save_every=300",
                 "train.keep_last=2", "train.eval_max_sentences=200"]  # fmt: skip
    argv = ["train", recipe, "--run-dir", str(work / "run"), "--device", device]
    argv += [x for s in sets for x in ("--set", s)]
    timer = StepTimer(cuda=device == "cuda")
    timer.install()
    t1 = time.perf_counter()
    cli.main(argv, standalone_mode=False)
    wall = time.perf_counter() - t1
    records = [json.loads(x) for x in (work / "run" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r.get("split") == "train"]
    valid = [r for r in records if r.get("split") == "valid"]
    figures = {
        "command": "tfcli " + shlex.join(argv),
        "corpus_s": corpus_s,
        "train_command_wall_s": wall,  # tokenizer + encode + model build + training + saving
        "steps": train[-1]["step"] if train else 0,
        "tokens_per_s_logged": [r["tokens_per_s"] for r in train],
        "loss_first_last": [train[0]["loss"], train[-1]["loss"]] if train else None,
        "valid": valid[-1] if valid else None,
        "breakdown": timer.breakdown(),
    }
    (out / "parts" / "train_e2e.json").write_text(json.dumps(figures, indent=1) + "\n")


# --- the parts -----------------------------------------------------------------------------


@dataclass
class Part:
    name: str
    what: str
    budget_s: int  # hard timeout on a GPU; --smoke takes the smoke budget
    needs_cuda: bool = True
    cpu_smoke: bool = True  # False: skipped in --smoke on CPU too
    status: str = "pending"  # ok | failed | timeout | skipped
    reason: str = ""
    seconds: float = 0.0
    command: str = ""
    figures: dict = field(default_factory=dict)


def part_commands(name: str, out: Path, smoke: bool, device: str, peak: float | None) -> list:
    py, parts = sys.executable, out / "parts"
    md, js = str(parts / f"{name}.md"), str(parts / f"{name}.json")
    if name == "tests":
        return [py, "-m", "pytest", "tests/test_cuda.py", "-m", "gpu", "-q", "-rs",
                "-p", "no:cacheprovider", f"--junitxml={parts / 'tests.xml'}"]  # fmt: skip
    if name in ("train", "train_compile"):
        cmd = [py, str(HERE / "bench_train.py"), "--device", device, "--write", md, "--json", js]
        if smoke:
            cmd += ["--shape", "smoke", "--pairs", "2000", "--steps", "1", "--rounds", "2",
                    "--warmup", "1", "--threads", "1"]  # fmt: skip
        else:
            cmd += ["--shape", "base", "--bf16", "--steps", "10", "--rounds", "4"]
            cmd += ["--warmup", "6" if name == "train_compile" else "3"]  # recompiles: see notes
        if peak:
            cmd += ["--peak-tflops", str(peak)]
        return cmd + (["--compile"] if name == "train_compile" else [])
    if name == "train_e2e":
        cmd = [py, str(HERE / "gpu.py"), str(out), "--worker", "e2e", "--device", device]
        return cmd + (["--smoke"] if smoke else [])
    if name == "decode":
        cmd = [py, str(HERE / "bench_decode.py"), "--device", device, "--results", md,
               "--json", js, "--beam", "5"]  # fmt: skip
        if smoke:
            return cmd + ["--size", "tiny", "--vocab", "300", "--sentences", "8", "--rounds", "1",
                          "--max-len", "8", "--threads", "1"]  # fmt: skip
        return cmd + ["--size", "base", "--sentences", "300", "--rounds", "2"]
    if name == "mlm":
        cmd = [py, str(HERE / "bench_mlm.py"), "--device", device, "--out", md, "--json", js]
        if smoke:
            return cmd + ["--shape", "smoke", "--mb", "0.05", "--vocab", "300", "--batch", "4",
                          "--block", "32", "--steps", "2", "--warmup", "1", "--threads", "1"]  # fmt: skip
        return cmd + ["--shape", "base", "--precision", "bf16", "--steps", "40", "--warmup", "3",
                      "--chunk", "10", "--batch", "32", "--block", "128"]  # fmt: skip
    raise ValueError(name)


def make_parts() -> list[Part]:
    return [
        # budgets (seconds, hard timeouts) sum to 400: room under the 8 minutes for start-up
        Part("tests", "tests marked gpu (tests/test_cuda.py)", 70, needs_cuda=False),
        Part("train", "training step, base shape, bf16, fused Adam vs MarianMTModel", 50),
        Part("train_e2e", "`tfcli train transformer-base` for a minute, step-time breakdown", 105),
        Part("decode", "beam 5, batched, vs HF generate() on the same weights", 45),
        Part("mlm", "MLM BERT-base vs BertForMaskedLM + DataCollatorForLanguageModeling", 55),
        # inductor's C++ code generation takes minutes on a CPU: on CPU --smoke records a skip
        Part(
            "train_compile",
            "the training step with torch.compile on both sides",
            75,
            cpu_smoke=False,
        ),  # fmt: skip
    ]


def run_part(part: Part, cmd: list[str], out: Path, timeout: float) -> None:
    """Run one part in its own session, so that a timeout kills it and every process it
    started (bench_train's two sides): nothing is left holding the GPU for the next part."""
    log = out / "logs" / f"{part.name}.log"
    part.command = shlex.join(cmd)
    t0 = time.perf_counter()
    env = {**os.environ, "TFCLI_QUIET": "1", "PYTHONPATH": str(ROOT)}
    if part.name == "train_compile":
        env["TORCH_LOGS"] = "recompiles"  # counted below: a recompile per batch shape is a bug
    with log.open("w", encoding="utf-8") as f:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)  # fmt: skip
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            part.status, part.reason = "timeout", f"killed after its budget of {timeout:.0f} s"
            rc = None
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # its group: the part and its children
            proc.wait()
    part.seconds = time.perf_counter() - t0
    if rc is not None:
        part.status = "ok" if rc == 0 else "failed"
        if rc:
            tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
            part.reason = f"exit status {rc}: " + " | ".join(tail)
    fig = out / "parts" / f"{part.name}.json"
    if part.name == "tests" and (out / "parts" / "tests.xml").exists():
        part.figures = junit_summary(out / "parts" / "tests.xml")
        fig.write_text(json.dumps(part.figures, indent=1) + "\n")
    elif fig.exists():
        part.figures = json.loads(fig.read_text())
    if part.name == "train_compile":
        text = log.read_text(encoding="utf-8", errors="replace")
        part.figures["recompiles_logged"] = text.count("Recompiling function")


def junit_summary(path: Path) -> dict:
    """pytest's junit XML as {test: outcome or 'skipped: reason'} plus counts."""
    cases = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome = "passed"
        for child in case:
            if child.tag in ("skipped", "failure", "error"):
                outcome = f"{child.tag}: {child.get('message', '')}".strip()
        cases[case.get("name")] = outcome
    counts = {k: sum(v.split(":")[0] == k for v in cases.values())
              for k in ("passed", "failure", "error", "skipped")}  # fmt: skip
    return {"cases": cases, "counts": counts}


# --- the report ----------------------------------------------------------------------------


def environment(device: str, argv: list[str], smoke: bool, peak: float | None) -> dict:
    import torch

    try:
        import transformers

        tf_version = transformers.__version__
    except ImportError:
        tf_version = None
    gpu = torch.cuda.get_device_name() if device == "cuda" else None
    needed = ("click", "rich", "yaml", "tokenizers", "safetensors", "sacrebleu", "transformers",
              "pytest", "tfcli")  # fmt: skip
    sys.path.insert(0, str(ROOT))
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": "benchmarks/gpu.sh " + shlex.join(argv),
        "mode": "smoke" if smoke else "full",
        "device": device, "gpu": gpu, "bf16_peak_tflops": peak,
        "torch": torch.__version__, "cuda": torch.version.cuda, "transformers": tf_version,
        "python": platform.python_version(), "cpu_count": os.cpu_count(), "missing": missing,
    }  # fmt: skip


def headline(part: Part) -> str:
    f = part.figures
    if not f:
        return "-"
    if part.name == "tests":
        return ", ".join(f"{v} {k}" for k, v in f["counts"].items() if v)
    if part.name == "train_e2e":
        b = f.get("breakdown", {})
        dev = b.get("device")
        wait = f"GPU waits for host {dev['gpu_waits_for_host_fraction']:.1%}" if dev else (
            "no device timing on CPU")  # fmt: skip
        rate = f.get("tokens_per_s_logged") or [0]
        return f"{f['steps']} updates, {statistics.median(rate):,.0f} tokens/s logged; {wait}"
    text = f"{f['ratio']:.2f}x"
    if part.name.startswith("train") and f.get("mfu"):
        text += f" (MFU tfcli {f['mfu']['tfcli']:.1%}, Marian {f['mfu']['marian']:.1%})"
    return text


def verdict(part: Part, smoke: bool) -> str:
    goal = GOALS.get(part.name)
    if goal is None or part.status != "ok" or "ratio" not in part.figures:
        return "-"
    if smoke:
        return "smoke: not a measurement"
    return "met" if part.figures["ratio"] >= goal else "**not met**"


def markdown(env: dict, parts: list[Part]) -> str:
    where = env["gpu"] or f"CPU ({env['cpu_count']} cores)"
    lines = [
        f"# GPU check ({env['mode']} mode): {where}",
        "",
        f"- date: {env['date']}; command: `{env['command']}`",
        f"- torch {env['torch']}, CUDA {env['cuda']}, transformers {env['transformers']}, "
        f"Python {env['python']}; bf16 peak for MFU: {env['bf16_peak_tflops'] or 'unknown'} "
        "TFLOP/s",
    ]
    if env["mode"] == "smoke":
        lines.append("- **smoke mode: tiny shapes prove the pipeline; no figure here is a "
                     "measurement**")  # fmt: skip
    lines += [
        "",
        "| part | what | status | seconds / budget | tfcli vs peer | goal | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in parts:
        goal = f">= {GOALS[p.name]:.0f}x" if p.name in GOALS else "-"
        status = p.status + (f" ({p.reason})" if p.reason and p.status != "failed" else "")
        lines.append(
            f"| {p.name} | {p.what} | {status} | {p.seconds:.0f} / {p.budget_s} | "
            f"{headline(p)} | {goal} | {verdict(p, env['mode'] == 'smoke')} |"
        )
    for p in parts:
        lines += ["", f"## {p.name}", "", f"- status: {p.status}"]
        if p.reason:
            lines.append(f"- reason: {p.reason}")
        if p.command:
            lines.append(f"- command: `{p.command}`")
        if p.name == "tests" and p.figures:
            lines += [f"- `{k}`: {v}" for k, v in p.figures["cases"].items()]
        elif p.name == "train_e2e" and p.figures:
            lines += ["", "```json", json.dumps(p.figures["breakdown"], indent=1), "```"]
        md = Path(env["out"]) / "parts" / f"{p.name}.md"
        if md.exists():
            lines += ["", md.read_text(encoding="utf-8").strip()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="folder for gpu.json, gpu.md, parts/, logs/")
    ap.add_argument("--smoke", action="store_true", help="tiny shapes, any device: seconds")
    ap.add_argument("--peak-tflops", type=float, default=None, help="override the bf16 peak")
    ap.add_argument("--only", nargs="+", default=None, help="run only these parts (a rerun)")
    ap.add_argument(
        "--budget", type=float, default=TOTAL_BUDGET_S, help="seconds for all parts together"
    )
    ap.add_argument("--worker", choices=["e2e"], default=None, help=argparse.SUPPRESS)
    ap.add_argument("--device", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    if args.worker == "e2e":
        e2e_worker(args.out, args.smoke, args.device)
        return 0

    import torch

    start = time.monotonic()
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    peak = args.peak_tflops or (peak_tflops(torch.cuda.get_device_name()) if cuda else None)
    for sub in ("parts", "logs"):
        (args.out / sub).mkdir(parents=True, exist_ok=True)
    env = environment(device, argv, args.smoke, peak)
    env["out"] = str(args.out)
    if env["missing"]:
        print(f"gpu.py: missing {', '.join(env['missing'])}: pip install -e '.[bench]' (the parts "
              "that need them will fail)", flush=True)  # fmt: skip
    parts = [p for p in make_parts() if args.only is None or p.name in args.only]
    for p in parts:
        budget = p.budget_s if not args.smoke else 60
        left = args.budget - (time.monotonic() - start)
        if p.needs_cuda and not cuda and not args.smoke:
            p.status, p.reason = "skipped", "no CUDA device (run with --smoke on CPU)"
        elif args.smoke and not cuda and not p.cpu_smoke:
            p.status, p.reason = "skipped", "torch.compile on CPU takes minutes; runs on a GPU"
        elif left < min(budget, 20):
            p.status, p.reason = "skipped", f"out of time ({left:.0f} s of --budget left)"
        else:
            cmd = part_commands(p.name, args.out, args.smoke, device, peak)
            p.budget_s = int(min(budget, left))  # the hard timeout it ran under
            print(f"gpu.py: {p.name} (budget {p.budget_s} s) ...", flush=True)
            run_part(p, cmd, args.out, p.budget_s)
            print(f"gpu.py: {p.name} {p.status} in {p.seconds:.0f} s {p.reason}", flush=True)
    env["seconds"] = time.monotonic() - start
    result = {"environment": env, "goals": GOALS, "parts": [asdict(p) for p in parts]}
    (args.out / "gpu.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    text = markdown(env, parts)
    (args.out / "gpu.md").write_text(text, encoding="utf-8")
    print(text)
    return int(any(p.status in ("failed", "timeout") for p in parts))


if __name__ == "__main__":
    sys.exit(main())

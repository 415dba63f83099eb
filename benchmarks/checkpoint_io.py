"""Checkpoint I/O: tfcli.checkpoints.files vs safetensors' own helpers vs torch.save (fairseq/OpenNMT).

Side by side in one process, alternating round after round so load on a shared machine hits all
contenders alike; medians are reported. The model is a Transformer-base (6+6 layers, d=512,
32k shared vocabulary, ~60M parameters) built by tfcli.

* save     weights + metadata. tfcli streams the safetensors file and fsyncs before the rename
           (the shipped, crash-safe path); safetensors.torch.save_model and torch.save do not
           fsync, so they are also shown with an fsync added for a like-for-like ratio.
* load     weights into an already built model (build time is the same for everyone).
* meta     what `tfcli inspect` needs: tfcli reads the header only; a fairseq-style .pt has to be
           unpickled whole to reach its config.
* average  3 checkpoints -> element-wise mean: tfcli.average_checkpoints (tensor by tensor from
           the mmap) vs torch.load of each whole file, then sum (fairseq's approach).

    python benchmarks/checkpoint_io.py                       # CPU, fp32
    python benchmarks/checkpoint_io.py --device cuda --bf16  # GPU-resident bf16 weights

Prints seconds and ratios (peer / tfcli: > 1 means tfcli is faster).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from tfcli.checkpoints import files as ckpt
from tfcli.checkpoints.averaging import average_checkpoints
from tfcli.model.build import build_model
from tfcli.model.config import ModelSpec


def fsynced(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def contenders(model: torch.nn.Module, meta: dict, d: Path, device: str) -> dict[str, dict]:
    from safetensors.torch import load_model as st_load_model
    from safetensors.torch import save_model as st_save_model

    fairseq_like = {
        "model": model.state_dict(),
        "cfg": meta,
    }  # fairseq/OpenNMT keep both in one .pt
    ours, st, pt = d / "tfcli.safetensors", d / "st.safetensors", d / "torch.pt"
    # The files read by load/meta/average exist before the first round.
    ckpt.save_checkpoint(ours, model, meta)
    st_save_model(model, str(st), metadata={"tfcli": "{}"})
    torch.save(fairseq_like, pt)
    for i in range(3):
        ckpt.save_checkpoint(d / f"avg{i}.safetensors", model, meta)
        torch.save(fairseq_like, d / f"avg{i}.pt")

    def torch_average() -> dict:
        total: dict[str, torch.Tensor] = {}
        for i in range(3):
            state = torch.load(d / f"avg{i}.pt", map_location="cpu", weights_only=True)["model"]
            for k, v in state.items():
                total[k] = total[k] + v.float() if k in total else v.float().clone()
        return {k: v / 3 for k, v in total.items()}

    return {
        "save": {
            "tfcli (fsync)": lambda: ckpt.save_checkpoint(ours, model, meta),
            "safetensors.save_model": lambda: st_save_model(model, str(st)),
            "safetensors.save_model + fsync": lambda: (st_save_model(model, str(st)), fsynced(st)),
            "torch.save": lambda: torch.save(fairseq_like, pt),
            "torch.save + fsync": lambda: (torch.save(fairseq_like, pt), fsynced(pt)),
        },
        "load": {
            "tfcli": lambda: model.load_state_dict(ckpt.load_state_dict(ours, device)[0]),
            "safetensors.load_model": lambda: st_load_model(model, str(st), device=device),
            "torch.load": lambda: model.load_state_dict(
                torch.load(pt, map_location=device, weights_only=True)["model"]
            ),
        },
        "meta": {
            "tfcli read_meta": lambda: ckpt.read_meta(ours),
            "torch.load (whole file)": lambda: torch.load(
                pt, map_location="cpu", weights_only=True
            )["cfg"],
        },
        "average": {
            "tfcli": lambda: average_checkpoints([d / f"avg{i}.safetensors" for i in range(3)]),
            "torch.load + sum": torch_average,
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--bf16", action="store_true", help="store bf16 weights (as a bf16 model would)"
    )
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--vocab", type=int, default=32000)
    args = ap.parse_args()

    torch.manual_seed(0)
    spec = ModelSpec("seq2seq", args.vocab, args.vocab, d_model=512, n_heads=8, d_ff=2048,
                     encoder_layers=6, decoder_layers=6)  # fmt: skip
    model = build_model(spec).to(args.device)
    if args.bf16:
        model = model.to(torch.bfloat16)
    n_params = sum(p.numel() for p in model.parameters())
    tok = '{"model": {"type": "BPE", "vocab": {}}}' + " " * 2_000_000  # a 32k BPE vocab is ~2 MB
    meta = {
        "kind": "seq2seq",
        "model": spec.to_dict(),
        "tokenizer": {"joint": True, "src": tok, "tgt": tok},
    }
    print(f"model: {n_params / 1e6:.1f}M parameters, device {args.device}, bf16 {args.bf16}")
    with tempfile.TemporaryDirectory(prefix="tfcli-bench-") as tmp:
        table = contenders(model, meta, Path(tmp), args.device)
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.rounds):
            for task, fns in table.items():
                for name, fn in fns.items():
                    times.setdefault((task, name), []).append(timed(fn))
        size = (Path(tmp) / "tfcli.safetensors").stat().st_size
        print(f"tfcli file: {size / 2**20:.1f} MiB (the shared embedding stored once)")
    print(f"\n{'task':8} {'contender':34} {'median s':>9} {'peer/tfcli':>11}")
    for task, fns in table.items():
        base = statistics.median(times[(task, next(iter(fns)))])
        for name in fns:
            med = statistics.median(times[(task, name)])
            print(f"{task:8} {name:34} {med:9.4f} {med / base:11.2f}")


if __name__ == "__main__":
    main()

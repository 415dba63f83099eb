"""Checkpoints: the only module that knows the file format.

A checkpoint is one self-contained safetensors file: the weights, plus JSON metadata in the
header (key "tfcli": recipe, model spec, embedded tokenizer JSON, step, metrics, history), so
`inspect` reads everything from the header without building a model and `decode` needs no other
file. Tensors that share storage (tied embeddings) are written once; the aliases are recorded in
the header (key "tfcli_shared") and restored on load.

The safetensors file is written here, tensor by tensor, rather than with `safetensors.torch.
save_file`: the Rust writer does not report a full disk on every platform, and streaming from
Python makes ENOSPC an ordinary OSError while never holding a second copy of the weights.
Training state (optimizer, scheduler, RNG states) goes to `step-XXXXXXXX.state.pt` beside the
weights with `torch.save` and is read back with `torch.load(weights_only=True)`.

The names of a run's files are tfcli.run_dir's; finding the latest or best one and pruning,
tfcli.checkpoints.steps'.
"""

from __future__ import annotations

import json
import struct
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from tfcli import __version__
from tfcli.errors import CheckpointError
from tfcli.textio import atomic_write

if TYPE_CHECKING:
    import torch
    from tokenizers import Tokenizer
    from torch import nn

FORMAT_VERSION = 1
META_KEY = "tfcli"
SHARED_KEY = "tfcli_shared"  # {"alias name": "stored name"} for tensors written once
DTYPE_CODES = {  # torch dtype name -> safetensors dtype code
    "float64": "F64",
    "float32": "F32",
    "float16": "F16",
    "bfloat16": "BF16",
    "float8_e4m3fn": "F8_E4M3",
    "float8_e5m2": "F8_E5M2",
    "int64": "I64",
    "int32": "I32",
    "int16": "I16",
    "int8": "I8",
    "uint8": "U8",
    "bool": "BOOL",
}


# --- atomic writes -----------------------------------------------------------------------------


HINT = "lower train.keep_last or choose another run_dir"


def _write_atomically(path: Path, write: Callable[[IO[bytes]], None], what: str) -> None:
    atomic_write(path, write, what, error=CheckpointError, hint=HINT)


# --- weights + metadata ------------------------------------------------------------------------


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "value"):  # enums
        return obj.value
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    raise TypeError(f"checkpoint metadata holds a {type(obj).__name__}, which JSON cannot store")


def _dedupe(tensors: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Split tensors into those to write and aliases (same storage, offset, shape, stride)."""
    unique: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    first: dict[tuple, str] = {}
    for name, t in tensors.items():
        if t.numel() == 0:  # empty tensors may all report data_ptr 0
            unique[name] = t
            continue
        key = (
            str(t.device),
            t.untyped_storage().data_ptr(),
            t.storage_offset(),
            tuple(t.shape),
            tuple(t.stride()),
            t.dtype,
        )
        if key in first:
            aliases[name] = first[key]
        else:
            first[key] = name
            unique[name] = t
    return unique, aliases


def write_safetensors(f: IO[bytes], tensors: dict[str, torch.Tensor], metadata: dict) -> None:
    """The safetensors layout: u64 header length, JSON header, then raw little-endian bytes.

    Every checkpoint's bytes pass through here, so it is also the fault-injection point: tests
    replace it (monkeypatch) to simulate a full disk or a crash in the middle of a write."""
    import torch

    if sys.byteorder != "little":  # the bytes are written as they sit in memory
        raise CheckpointError(
            "writing checkpoints needs a little-endian machine (safetensors format)"
        )
    header: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    names = sorted(tensors)
    for name in names:
        t = tensors[name]
        dtype = str(t.dtype).removeprefix("torch.")
        if dtype not in DTYPE_CODES:
            raise CheckpointError(
                f"tensor '{name}' has dtype {dtype}, which safetensors cannot store"
            )
        nbytes = t.numel() * t.element_size()
        header[name] = {
            "dtype": DTYPE_CODES[dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    blob = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    blob += b" " * (-len(blob) % 8)  # keep the data 8-byte aligned, as safetensors does
    f.write(struct.pack("<Q", len(blob)))
    f.write(blob)
    for name in names:
        t = tensors[name].detach()
        if t.numel() == 0:
            continue
        t = t.to("cpu").contiguous().reshape(-1)
        if t.dtype != torch.uint8:
            t = t.view(torch.uint8)  # reinterpret bytes; works for bf16 and bool alike
        f.write(t.numpy().data)


def save_checkpoint(path: Path, model: nn.Module | Mapping[str, torch.Tensor], meta: dict) -> None:
    """Write `model`'s weights (or a state dict) and `meta` to one safetensors file, atomically.

    `meta` follows docs/ARCHITECTURE.md ("meta keys"); format_version, tfcli_version and created
    (ISO 8601, UTC) are added. A full disk raises CheckpointError and leaves older files intact.
    """
    state = model.state_dict() if hasattr(model, "state_dict") else dict(model)
    tensors, aliases = _dedupe(state)
    meta = {
        **meta,
        "format_version": FORMAT_VERSION,
        "tfcli_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    metadata = {
        META_KEY: json.dumps(meta, default=_json_default, ensure_ascii=False),
        SHARED_KEY: json.dumps(aliases),
    }
    path = Path(path)
    _write_atomically(path, lambda f: write_safetensors(f, tensors, metadata), "checkpoint")


def open_header(path: Path) -> tuple[dict, dict[str, str], dict[str, tuple[str, list[int]]]]:
    """(meta, aliases, {name: (dtype, shape)}) from the header alone; clear errors otherwise."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.exists():
        raise CheckpointError(
            f"checkpoint not found: {path}; pass a .safetensors file or a run dir"
        )
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory; pass a .safetensors file inside it")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
            shapes = {k: (f.get_slice(k).get_dtype(), f.get_slice(k).get_shape()) for k in f.keys()}
    except SafetensorError as e:
        raise CheckpointError(
            f"{path}: not a readable safetensors file ({e}); it is truncated or corrupt - "
            "copy it again or use another checkpoint from the run's checkpoints/ directory"
        ) from None
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror}") from None
    if META_KEY not in raw:
        raise CheckpointError(
            f"{path}: a safetensors file, but not a tfcli checkpoint (no '{META_KEY}' metadata); "
            "tfcli reads checkpoints written by `tfcli train`, `pretrain-mlm` or `average`"
        )
    try:
        meta = json.loads(raw[META_KEY])
        aliases = json.loads(raw.get(SHARED_KEY, "{}"))
    except RecursionError:  # nesting no checkpoint of ours has (safetensors bounds the size)
        raise CheckpointError(
            f"{path}: metadata nested too deeply; not a tfcli checkpoint"
        ) from None
    except json.JSONDecodeError as e:
        raise CheckpointError(
            f"{path}: the tfcli metadata is not valid JSON ({e}); corrupt file"
        ) from None
    if not isinstance(meta, dict) or not isinstance(aliases, dict):
        raise CheckpointError(f"{path}: the tfcli metadata is not a JSON object; corrupt file")
    version = meta.get("format_version")
    if not isinstance(version, int):
        raise CheckpointError(f"{path}: metadata has no format_version; corrupt file")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: written by tfcli {meta.get('tfcli_version', '?')} in checkpoint format "
            f"{version}; this tfcli ({__version__}) reads format {FORMAT_VERSION} at most; "
            "upgrade tfcli (pip install -U tfcli)"
        )
    return meta, aliases, shapes


def read_meta(path: Path) -> dict:
    """The checkpoint's metadata, read from the header only (no tensors loaded, no model built)."""
    return open_header(path)[0]


def read_tensor_info(path: Path) -> tuple[dict[str, tuple[str, list[int]]], dict[str, str]]:
    """({stored name: (dtype code, shape)}, {alias: stored name}) from the header only."""
    _, aliases, shapes = open_header(path)
    return shapes, aliases


def load_state_dict(path: Path, device: str | torch.device = "cpu") -> tuple[dict, dict]:
    """(state dict with aliases restored as the same tensor object, meta)."""
    from safetensors.torch import load_file

    meta, aliases, _ = open_header(path)
    state = load_file(str(path), device=str(device))
    for alias, stored in aliases.items():
        if stored not in state:
            raise CheckpointError(f"{path}: shared tensor '{alias}' points to missing '{stored}'")
        state[alias] = state[stored]
    return state, meta


def _check_weights(path: Path, state: Mapping[str, torch.Tensor], model: nn.Module) -> None:
    """One line naming what differs between the file and the model its spec builds."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: file {list(state[k].shape)} vs model {list(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape", shapes)):
        if items:
            more = f" and {len(items) - 3} more" if len(items) > 3 else ""
            problems.append(f"{label}: {', '.join(items[:3])}{more}")
    if problems:
        raise CheckpointError(
            f"{path}: weights do not match the model its metadata describes ({'; '.join(problems)}); "
            "the file was edited or written by an incompatible tfcli"
        )


def load_model(path: Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Build the model from meta["model"] (a ModelSpec dict), load the weights strictly.

    Returns (model in eval mode on `device`, meta).
    """
    from tfcli.model.build import build_model
    from tfcli.model.config import ModelSpec

    state, meta = load_state_dict(path)
    if "model" not in meta:
        raise CheckpointError(f"{path}: metadata has no model spec; corrupt or hand-made file")
    model = build_model(ModelSpec.from_dict(meta["model"]))
    _check_weights(path, state, model)
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), meta


def load_tokenizers(meta: dict) -> dict[str, Tokenizer]:
    """{"src": Tokenizer, "tgt": Tokenizer} from the JSON embedded in meta["tokenizer"].

    With a joint vocabulary both sides are the same object; MLM checkpoints may carry only "src".
    """
    from tfcli.errors import TokenizerError
    from tfcli.tokenizer.vocab import tokenizer_from_json

    info = meta.get("tokenizer")
    if not isinstance(info, dict) or not any(isinstance(info.get(s), str) for s in ("src", "tgt")):
        raise CheckpointError(
            "checkpoint has no embedded tokenizer; it was not written by tfcli train/pretrain-mlm"
        )
    parsed: dict[str, Tokenizer] = {}  # JSON text -> Tokenizer, so a joint vocab is parsed once
    out: dict[str, Tokenizer] = {}
    for side in ("src", "tgt"):
        text = info.get(side)
        if not isinstance(text, str):
            continue
        if text not in parsed:
            try:
                parsed[text] = tokenizer_from_json(text)
            except TokenizerError as e:
                raise CheckpointError(f"checkpoint's embedded {side} tokenizer: {e}") from None
        out[side] = parsed[text]
    if info.get("joint"):
        only = out.get("src") or out["tgt"]
        out.setdefault("src", only)
        out.setdefault("tgt", only)
    return out


# --- training state ----------------------------------------------------------------------------


def _check_plain(obj: Any, where: str) -> None:
    """Only what torch.load(weights_only=True) reads back: tensors, numbers, strings, containers."""
    import torch

    if obj is None or isinstance(obj, (bool, int, float, str, torch.Tensor, torch.Size)):
        return
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_plain(v, f"{where}[{i}]")
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise CheckpointError(f"training state key {where}[{k!r}] must be a str or int")
            _check_plain(v, f"{where}[{k!r}]")
        return
    raise CheckpointError(
        f"training state {where} holds a {type(obj).__name__}; only tensors, numbers, strings, "
        "lists and dicts can be saved (convert it, e.g. with torch.as_tensor)"
    )


def save_state(path: Path, state: dict) -> None:
    """torch.save `state` (optimizer, scheduler, step, RNG states as tensors...) atomically."""
    import torch

    _check_plain(state, "state")
    _write_atomically(Path(path), lambda f: torch.save(state, f), "training state")


def load_state(path: Path) -> dict:
    """The dict written by save_state, loaded with weights_only=True (no arbitrary code runs)."""
    import pickle  # only for the error class torch.load(weights_only=True) raises; nothing is unpickled

    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"training state not found: {path}; it is written beside each step checkpoint "
            "(pruned ones lose theirs); resume from the latest step or start afresh"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "unsupported object"
        raise CheckpointError(
            f"{path}: training state holds objects tfcli will not load ({first})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CheckpointError(
            f"{path}: training state is truncated or corrupt ({e}); resume from another step"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(
            f"{path}: training state is a {type(state).__name__}, expected a dict"
        )
    return state

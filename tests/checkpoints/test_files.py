"""Checkpoint format: round trips, header-only metadata, atomic writes, training state."""

from __future__ import annotations

import errno
import json
import random
import struct
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace

from tfcli.checkpoints import files as ckpt
from tfcli.errors import CheckpointError
from tfcli.model.build import build_model
from tfcli.model.config import ModelSpec


def tiny_spec(kind: str = "seq2seq", **kw) -> ModelSpec:
    base = dict(kind=kind, src_vocab_size=40, tgt_vocab_size=40, d_model=16, n_heads=2, d_ff=32)
    base.update(encoder_layers=1, decoder_layers=0 if kind == "mlm" else 1, dropout=0.0)
    return ModelSpec(**{**base, **kw})


def tiny_model(seed: int = 0, **kw):
    torch.manual_seed(seed)
    return build_model(tiny_spec(**kw))


def meta_for(model, step: int = 10, **extra) -> dict:
    return {"kind": model.spec.kind, "model": model.spec.to_dict(), "step": step, **extra}


def tokenizer_json() -> str:
    vocab = {t: i for i, t in enumerate(["<pad>", "<unk>", "<s>", "</s>", "<mask>", "a", "b"])}
    tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = Whitespace()
    return tok.to_str()


def temp_files(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


# --- weights + metadata --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["seq2seq", "mlm"])
def test_round_trip_is_bit_equal_and_keeps_sharing(tmp_path, kind):
    model = tiny_model(kind=kind)
    path = tmp_path / "m.safetensors"
    ckpt.save_checkpoint(path, model, meta_for(model))
    loaded, meta = ckpt.load_model(path)
    assert not loaded.training
    before, after = model.state_dict(), loaded.state_dict()
    assert before.keys() == after.keys()
    for name, t in before.items():
        assert torch.equal(t, after[name]), name
    tied = loaded.src_embed.tokens.weight
    head = loaded.generator.proj.weight if kind == "seq2seq" else loaded.head.proj.weight
    assert head is tied  # still one Parameter: training updates both
    assert meta["format_version"] == ckpt.FORMAT_VERSION and meta["step"] == 10


def test_shared_embedding_is_stored_once(tmp_path):
    model = tiny_model()
    path = tmp_path / "m.safetensors"
    ckpt.save_checkpoint(path, model, meta_for(model))
    shapes, aliases = ckpt.read_tensor_info(path)
    assert aliases == {
        "tgt_embed.tokens.weight": "src_embed.tokens.weight",
        "generator.proj.weight": "src_embed.tokens.weight",
    }
    assert "generator.proj.weight" not in shapes
    unique = sum(p.numel() for p in model.parameters())  # parameters() dedupes tied ones
    stored = sum(torch.Size(shape).numel() for _, shape in shapes.values())
    assert stored == unique
    assert path.stat().st_size < 4 * unique + 64_000  # float32 data + a JSON header


def test_file_is_standard_safetensors(tmp_path):
    """Other tools (safetensors.torch.load_file, HF) read it: bf16, ints, bools and scalars too."""
    from safetensors.torch import load_file

    state = {
        "w": torch.randn(3, 5, dtype=torch.bfloat16),
        "n": torch.tensor(7),
        "flags": torch.tensor([True, False, True]),
        "empty": torch.zeros(0, 4),
        "t": torch.arange(12.0).reshape(3, 4).t(),  # non-contiguous view
    }
    path = tmp_path / "s.safetensors"
    ckpt.save_checkpoint(path, state, {"step": 0})
    back = load_file(str(path))
    for k, v in state.items():
        assert back[k].dtype == v.dtype and torch.equal(back[k], v), k


def test_meta_reads_header_only(tmp_path, monkeypatch):
    model = tiny_model()
    path = tmp_path / "m.safetensors"
    meta = meta_for(model, recipe={"run_dir": Path("runs/x")}, tokenizer={"joint": True})
    ckpt.save_checkpoint(path, model, meta)

    def boom(*a, **k):
        raise AssertionError("read_meta must not build a model or load tensors")

    monkeypatch.setattr("tfcli.model.build.build_model", boom)
    monkeypatch.setattr("safetensors.torch.load_file", boom)
    got = ckpt.read_meta(path)
    assert got["model"] == model.spec.to_dict()
    assert got["recipe"] == {"run_dir": "runs/x"}  # Paths become strings
    assert got["tfcli_version"] and got["created"].endswith("Z")


def test_load_tokenizers_from_embedded_json():
    text = tokenizer_json()
    toks = ckpt.load_tokenizers({"tokenizer": {"joint": True, "src": text, "tgt": text}})
    assert toks["src"] is toks["tgt"]
    assert toks["src"].encode("a b").ids == [5, 6]
    mlm = ckpt.load_tokenizers({"tokenizer": {"joint": True, "src": text}})
    assert set(mlm) == {"src", "tgt"}
    with pytest.raises(CheckpointError, match="no embedded tokenizer"):
        ckpt.load_tokenizers({"step": 1})


# --- atomicity and errors ----------------------------------------------------------------------


def _fail_midway(exc: BaseException):
    def write(f, tensors, metadata):
        f.write(b"partial bytes")
        raise exc

    return write


def test_disk_full_keeps_previous_file(tmp_path, monkeypatch):
    model = tiny_model()
    path = tmp_path / "ckpts" / "best.safetensors"
    ckpt.save_checkpoint(path, model, meta_for(model, step=1))
    monkeypatch.setattr(ckpt, "write_safetensors", _fail_midway(OSError(errno.ENOSPC, "full")))
    with pytest.raises(CheckpointError, match=r"disk full .* in .*ckpts \(.* free\)"):
        ckpt.save_checkpoint(path, model, meta_for(model, step=2))
    assert ckpt.read_meta(path)["step"] == 1
    assert temp_files(path.parent) == []


def test_interrupted_write_leaves_no_temp_file(tmp_path, monkeypatch):
    model = tiny_model()
    path = tmp_path / "m.safetensors"
    monkeypatch.setattr(ckpt, "write_safetensors", _fail_midway(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(path, model, meta_for(model))
    assert list(tmp_path.iterdir()) == []


def test_state_disk_full_is_reported(tmp_path, monkeypatch):
    path = tmp_path / "step-00000001.state.pt"
    ckpt.save_state(path, {"step": 1})

    def full(obj, f):
        f.write(b"half")
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as e:  # what torch.save does: a RuntimeError whose context is the OSError
            raise RuntimeError("PytorchStreamWriter failed writing file") from e

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(CheckpointError, match="disk full while writing training state"):
        ckpt.save_state(path, {"step": 2})
    monkeypatch.undo()
    assert ckpt.load_state(path)["step"] == 1
    assert temp_files(tmp_path) == []


def test_truncated_and_foreign_files(tmp_path):
    model = tiny_model()
    good = tmp_path / "good.safetensors"
    ckpt.save_checkpoint(good, model, meta_for(model))
    data = good.read_bytes()

    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) - 100])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        ckpt.read_meta(truncated)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        ckpt.read_meta(garbage)

    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"x": torch.zeros(2)}, str(foreign), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="not a tfcli checkpoint"):
        ckpt.read_meta(foreign)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        ckpt.read_meta(tmp_path / "missing.safetensors")


def test_newer_format_version_is_refused(tmp_path):
    path = tmp_path / "future.safetensors"
    ckpt.save_checkpoint(path, {"x": torch.zeros(1)}, {})
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + n])
    meta = json.loads(header["__metadata__"]["tfcli"])
    meta["format_version"] = ckpt.FORMAT_VERSION + 1
    header["__metadata__"]["tfcli"] = json.dumps(meta)
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data[8 + n :])
    with pytest.raises(CheckpointError, match="upgrade tfcli"):
        ckpt.read_meta(path)


def test_a_spec_written_before_the_shared_architecture_still_loads(tmp_path):
    """meta["model"] as tfcli wrote it before ModelSpec shared the recipe's fields: these keys,
    in this order, plain strings for the choices."""
    old = {"kind": "mlm", "src_vocab_size": 40, "tgt_vocab_size": 40, "d_model": 16,
           "n_heads": 2, "d_ff": 32, "encoder_layers": 1, "decoder_layers": 0, "dropout": 0.0,
           "attention_dropout": 0.0, "activation": "gelu", "norm": "pre", "positions": "learned",
           "max_positions": 64, "share_embeddings": True, "window": 0, "pad_id": 0,
           "init": "xavier"}  # fmt: skip
    model = build_model(ModelSpec.from_dict(old))
    path = tmp_path / "old.safetensors"
    ckpt.save_checkpoint(path, model, {"kind": "mlm", "model": old, "step": 3})
    loaded, meta = ckpt.load_model(path)
    new_defaults = {"max_relative_position": 16, "relative_values": False, "attention": "full",
                    "linformer_k": 256, "attention_score": "dot",
                    "decoder": "autoregressive"}  # fmt: skip
    assert meta["model"] == old and loaded.spec.to_dict() == old | new_defaults
    for name, t in model.state_dict().items():
        assert torch.equal(t, loaded.state_dict()[name]), name


def test_weights_not_matching_spec(tmp_path):
    model = tiny_model()
    path = tmp_path / "m.safetensors"
    other = tiny_spec(d_ff=48).to_dict()
    ckpt.save_checkpoint(path, model, {"model": other})
    with pytest.raises(CheckpointError, match=r"do not match .*shape: .*feed_forward"):
        ckpt.load_model(path)


# --- training state ------------------------------------------------------------------------------


def test_state_round_trip_restores_rng_and_optimizer(tmp_path):
    # An Adam state_dict's shape, built by hand: creating a real optimizer imports torch._dynamo
    # (seconds on a shared CPU) and adds nothing to what is checked here.
    optimizer = {
        "state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.randn(4, 2)}},
        "param_groups": [{"lr": 7e-4, "betas": (0.9, 0.98), "amsgrad": False, "params": [0]}],
    }
    torch.manual_seed(123)
    random.seed(5)
    state = {
        "step": 7,
        "optimizer": optimizer,
        "rng": {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])},
        "best": None,
        "history": [{"step": 5, "loss": 2.5}],
    }
    path = tmp_path / "s.state.pt"
    ckpt.save_state(path, state)
    expected = torch.rand(3)
    back = ckpt.load_state(path)
    torch.set_rng_state(back["rng"]["torch"])
    assert torch.equal(torch.rand(3), expected)
    assert torch.equal(back["optimizer"]["state"][0]["exp_avg"], optimizer["state"][0]["exp_avg"])
    assert back["optimizer"]["param_groups"] == optimizer["param_groups"]
    assert back["history"] == state["history"] and back["step"] == 7 and back["best"] is None


def test_state_refuses_arbitrary_objects(tmp_path):
    import numpy as np

    with pytest.raises(CheckpointError, match=r"state\['rng'\]\['numpy'\] holds a ndarray"):
        ckpt.save_state(tmp_path / "s.pt", {"rng": {"numpy": np.zeros(3)}})
    evil = tmp_path / "evil.state.pt"
    torch.save({"obj": Path("x")}, evil)  # a pickled class: weights_only must refuse it
    with pytest.raises(CheckpointError, match="will not load"):
        ckpt.load_state(evil)
    (tmp_path / "cut.state.pt").write_bytes(b"PK\x03\x04 cut")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        ckpt.load_state(tmp_path / "cut.state.pt")


def test_deeply_nested_metadata_is_one_error_not_a_recursion_traceback(tmp_path):
    path = tmp_path / "deep.safetensors"
    with open(path, "wb") as f:
        ckpt.write_safetensors(f, {}, {"tfcli": "[" * 200_000 + "]" * 200_000})
    with pytest.raises(CheckpointError, match="nested too deeply"):
        ckpt.read_meta(path)

"""tfcli.checkpoints.averaging: the element-wise mean of checkpoints, dtype round trip, refusals."""

from __future__ import annotations

import pytest
import torch
from test_files import meta_for, tiny_model

from tfcli.checkpoints import files as ckpt
from tfcli.checkpoints.averaging import average_checkpoints
from tfcli.errors import CheckpointError


def test_average_is_elementwise_mean(tmp_path):
    paths, models = [], []
    for seed in range(3):
        model = tiny_model(seed)
        paths.append(tmp_path / f"step-{seed:08d}.safetensors")
        ckpt.save_checkpoint(paths[-1], model, meta_for(model, step=seed))
        models.append(model.state_dict())
    state, meta = average_checkpoints(paths)
    for name in models[0]:
        mean = sum(m[name] for m in models) / 3
        assert torch.allclose(state[name], mean, rtol=0, atol=1e-6), name
    assert state["generator.proj.weight"] is state["src_embed.tokens.weight"]
    assert meta["averaged"]["steps"] == [0, 1, 2] and meta["step"] == 2
    out = tmp_path / "avg.safetensors"
    ckpt.save_checkpoint(out, state, meta)
    loaded, _ = ckpt.load_model(out)
    w = "encoder.layers.0.feed_forward.w_1.weight"
    assert torch.equal(loaded.state_dict()[w], state[w])


def test_average_bf16_casts_back_and_refuses_other_models(tmp_path):
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    ckpt.save_checkpoint(a, {"w": torch.tensor([1.0, 2.0], dtype=torch.bfloat16)}, {"model": {}})
    ckpt.save_checkpoint(b, {"w": torch.tensor([2.0, 3.0], dtype=torch.bfloat16)}, {"model": {}})
    state, _ = average_checkpoints([a, b])
    assert state["w"].dtype == torch.bfloat16 and state["w"].tolist() == [1.5, 2.5]
    m1, m2 = tiny_model(), tiny_model(d_ff=48)
    ckpt.save_checkpoint(a, m1, meta_for(m1))
    ckpt.save_checkpoint(b, m2, meta_for(m2))
    with pytest.raises(CheckpointError, match=r"different model \(d_ff: 32 vs 48\)"):
        average_checkpoints([a, b])

"""Cross-attention extraction and the heatmap file."""

from __future__ import annotations

import pytest
import torch

from tfcli.decoding.attention_plot import cross_attention, plot_attention, select
from tfcli.errors import TfcliError
from tfcli.model.build import build_model
from tfcli.model.config import ModelSpec


@pytest.fixture
def model():
    torch.manual_seed(0)
    spec = ModelSpec("seq2seq", 30, 30, d_model=16, n_heads=2, d_ff=32, encoder_layers=1,
                     decoder_layers=2, dropout=0.0)  # fmt: skip
    return build_model(spec).eval()


def test_weights_are_distributions_over_the_source(model):
    src = torch.tensor([[7, 8, 9, 3]])
    w = cross_attention(model, src, [11, 12, 13])
    assert w.shape == (2, 2, 4, 4)  # layers, heads, outputs + </s>, source incl. </s>
    assert torch.allclose(w.sum(-1), torch.ones(2, 2, 4), atol=1e-5)
    assert torch.equal(select(w), w[1].mean(0))
    assert torch.equal(select(w, layer=1, head=2), w[0, 1])
    with pytest.raises(TfcliError, match="layers 1..2"):
        select(w, layer=3)
    with pytest.raises(TfcliError, match="heads 1..2"):
        select(w, head=3)


def test_plot_is_a_png_written_atomically(model, tmp_path):
    w = torch.rand(3, 4)
    out = plot_attention(w, ["▁a", "▁b", "c", "</s>"], ["▁x", "y", "</s>"], tmp_path / "a.png", "t")
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]
    with pytest.raises(ValueError, match="labels"):
        plot_attention(w, ["a"], ["x"], tmp_path / "b.png")
    assert not (tmp_path / "b.png").exists()

"""Cross-attention extraction and the heatmap file."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer
from tokenizers.models import WordLevel

from tfcli.decoding.attention_plot import (
    check_layer_head,
    cross_attention,
    plot_attention,
    plot_translation,
    select,
)
from tfcli.decoding.search import Hypothesis
from tfcli.decoding.translate import Translation
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


def test_layer_and_head_checked_against_the_decoder():
    check_layer_head(2, 4, None, None)
    check_layer_head(2, 4, 2, 4)
    with pytest.raises(TfcliError, match="--layer 3: the decoder has layers 1..2"):
        check_layer_head(2, 4, 3, None)
    with pytest.raises(TfcliError, match="--head 5: attention has heads 1..4"):
        check_layer_head(2, 4, None, 5)


def test_plot_translation_draws_the_best_hypothesis(model, tmp_path):
    tok = Tokenizer(WordLevel({f"w{i}": i for i in range(30)}, unk_token="w1"))
    line = Translation(4, "w7 w8", [7, 8, 3], [Hypothesis([11, 12], -1.0)], ["w11 w12"])
    out = plot_translation(model, tok, tok, line, tmp_path / "a.png", layer=1, head=2)
    assert out == tmp_path / "a.png" and out.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(TfcliError, match="heads 1..2"):
        plot_translation(model, tok, tok, line, tmp_path / "b.png", head=3)
    assert not (tmp_path / "b.png").exists()

"""Guided attention (training/guided.py, `train.guided_attention`): the paper's weights, padding
excluded, only the chosen layers computed, the loss added with its schedule, validation kept
plain, resume exact, and a trained model measurably more diagonal (with the picture to show it)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from test_seq2seq import corpus, tiny_model  # noqa: F401 (corpus is a fixture)
from test_state import assert_same_weights, cli_train, demo, losses  # noqa: F401 (demo: fixture)

from tfcli.checkpoints.files import load_model
from tfcli.cli import cli, main
from tfcli.data.split import collate_parallel, open_split
from tfcli.decoding.attention_plot import diagonal_mass
from tfcli.errors import RecipeError
from tfcli.model.build import build_model
from tfcli.model.config import ModelSpec
from tfcli.recipe.loader import from_dict
from tfcli.recipe.schema import TrainConfig
from tfcli.tokenizer.vocab import BOS, EOS, PAD
from tfcli.training.guided import (
    GuidedAttention,
    guide_matrix,
    guided_penalty,
    layer_indices,
)
from tfcli.training.seq2seq import Seq2SeqObjective, label_smoothed_nll


def test_guide_matrix_is_the_papers_weights_and_zero_on_padding():
    """N = 4 targets, S = 5 sources in a (6, 7) padded grid, g = 0.2."""
    w = guide_matrix(torch.tensor([4]), torch.tensor([5]), 6, 7, 0.2)[0]
    expected = 1 - math.exp(-((1 / 4 - 3 / 5) ** 2) / (2 * 0.2**2))  # n = 1, s = 3
    assert w[1, 3].item() == pytest.approx(expected, rel=1e-6)
    assert w[0, 0].item() == 0.0  # on the diagonal
    assert w[3, 0].item() > 0.9  # far from it: last target, first source
    assert torch.all(w[4:] == 0) and torch.all(w[:, 5:] == 0)  # padded rows and columns
    wider = guide_matrix(torch.tensor([4]), torch.tensor([5]), 4, 5, 0.5)[0]
    assert torch.all(wider <= w[:4, :5] + 1e-7)  # a wider band penalises less


def one_hot_attention(cols: list[int], s: int) -> torch.Tensor:
    """(1, 1, T, S): target row n looks only at source position cols[n]."""
    a = torch.zeros(1, 1, len(cols), s)
    a[0, 0, torch.arange(len(cols)), torch.tensor(cols)] = 1.0
    return a


def batch(t: int, s: int, pad_t: int = 0, pad_s: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """src (1, s + pad_s) with </s> last, tgt (1, t + 1 + pad_t) = <s> words </s> [pads]."""
    src = torch.tensor([[*range(5, 5 + s - 1), EOS] + [PAD] * pad_s])
    tgt = torch.tensor([[BOS, *range(5, 5 + t - 1), EOS] + [PAD] * pad_t])
    return src, tgt


def test_penalty_ranks_diagonal_below_uniform_below_reversed_and_ignores_padding():
    src, tgt = batch(5, 5)
    diag = guided_penalty([one_hot_attention([0, 1, 2, 3, 4], 5)], src, tgt, 0.2)
    uniform = guided_penalty([torch.full((1, 1, 5, 5), 0.2)], src, tgt, 0.2)
    reverse = guided_penalty([one_hot_attention([4, 3, 2, 1, 0], 5)], src, tgt, 0.2)
    assert diag.item() == 0.0 < uniform.item() < reverse.item()
    assert reverse.item() < 5  # summed over 5 target tokens, each below 1
    # the same sentence padded on both sides: pad keys get no attention, pad rows do not count
    src_p, tgt_p = batch(5, 5, pad_t=3, pad_s=2)
    a = torch.zeros(1, 1, 8, 7)
    a[..., :5, :5] = one_hot_attention([4, 3, 2, 1, 0], 5)
    a[..., 5:, 0] = 1.0  # whatever the pad rows look at
    assert guided_penalty([a], src_p, tgt_p, 0.2).item() == pytest.approx(reverse.item())


def test_penalty_is_the_mean_over_layers_and_heads():
    src, tgt = batch(4, 6)
    g = torch.Generator().manual_seed(0)
    layers = [torch.rand(1, 3, 4, 6, generator=g).softmax(-1) for _ in range(2)]
    each = [guided_penalty([x[:, h : h + 1]], src, tgt, 0.2) for x in layers for h in range(3)]
    assert guided_penalty(layers, src, tgt, 0.2).item() == pytest.approx(
        sum(p.item() for p in each) / 6, rel=1e-6
    )


def test_layers_count_from_one_or_from_the_last():
    assert layer_indices([-1], 3) == (2,)
    assert layer_indices([1, -1], 3) == (0, 2)
    assert layer_indices([2], 3) == (1,)


def test_weight_fades_linearly_over_the_decay():
    constant = GuidedAttention(TrainConfig(guided_attention=0.5), 2)
    assert constant.weight(0) == constant.weight(10**6) == 0.5
    fading = GuidedAttention(TrainConfig(guided_attention=0.5, guided_attention_decay=10), 2)
    assert [fading.weight(s) for s in (0, 5, 10, 20)] == [0.5, 0.25, 0.0, 0.0]


def test_model_returns_only_the_requested_layers_with_the_same_logits():
    torch.manual_seed(0)
    spec = ModelSpec("seq2seq", 30, 30, d_model=16, n_heads=2, d_ff=32, encoder_layers=1,
                     decoder_layers=3, dropout=0.0)  # fmt: skip
    model = build_model(spec).eval()
    src = torch.tensor([[7, 8, 9, EOS], [7, 8, EOS, PAD]])
    tgt_in = torch.tensor([[BOS, 11, 12], [BOS, 13, PAD]])
    select = torch.tensor([0, 1, 2, 3])
    plain = model(src, tgt_in, select)
    logits, weights = model(src, tgt_in, select, (0, 2))
    torch.testing.assert_close(logits, plain)
    memory, src_mask = model.encode(src)
    _, every = model.decode(tgt_in, memory, src_mask, need_attention=True)
    assert len(weights) == 2
    torch.testing.assert_close(weights[0], every[0])
    torch.testing.assert_close(weights[1], every[2])
    weights[1].sum().backward()  # the weights carry gradients to the guided layer's q/k
    assert model.decoder.layers[2].cross_attn.q_proj.weight.grad.abs().sum() > 0


def with_guided(recipe, **kw):
    model = dataclasses.replace(recipe.model, dropout=0.0, attention_dropout=0.0)
    return dataclasses.replace(
        recipe, model=model, train=dataclasses.replace(recipe.train, eval_bleu=False, **kw)
    )


def test_objective_adds_the_weighted_penalty_in_training_only(corpus):  # noqa: F811
    recipe, train, valid, tok = corpus
    r = with_guided(recipe, guided_attention=0.5, guided_attention_decay=4)
    model = tiny_model(r, tok).train()  # dropout 0: every pass is the same function
    obj = Seq2SeqObjective(train, valid, r, tok)
    b = obj.collate(obj.train_batches(0, 0, 1)[0])
    loss, stats = obj.loss(model, b)
    logits = model(b["src"], b["tgt"][:, :-1], b["select"])
    ce, _ = label_smoothed_nll(logits, b["target"], r.train.label_smoothing)
    assert 0 < stats["guided"].item() < stats["tokens"]
    assert loss.item() == pytest.approx(ce.item() + 0.5 * stats["guided"].item(), rel=1e-5)
    obj.step = 2  # halfway through the fade
    assert obj.loss(model, b)[0].item() == pytest.approx(ce.item() + 0.25 * stats["guided"].item(), rel=1e-5)  # fmt: skip
    obj.step = 4  # faded out: nothing extra is computed
    loss4, stats4 = obj.loss(model, b)
    assert "guided" not in stats4 and loss4.item() == pytest.approx(ce.item(), rel=1e-6)
    with torch.no_grad():  # validation: loss is the plain cross-entropy, the penalty reported
        model.eval()
        plain = Seq2SeqObjective(train, valid, with_guided(recipe), tok).evaluate(model)
        guided = obj.evaluate(model)
    assert guided["loss"] == pytest.approx(plain["loss"]) and "guided" not in plain
    assert 0 < guided["guided"] < 1


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        ({"guided_attention_layers": [3]}, r"decoder layers 1..2 \(or -1..-2 from the last\)"),
        ({"guided_attention_layers": [0]}, "got \\[0\\]"),
        ({"guided_attention_layers": [2, -1]}, "names a layer twice"),
        ({"guided_attention_width": 0.0}, "guided_attention_width: must be > 0"),
        ({"guided_attention": -1.0}, "train.guided_attention: must be >= 0"),
    ],
)
def test_recipe_refuses_impossible_settings(sets, message):
    raw = {"model": {"decoder_layers": 2}, "train": {"guided_attention": 1.0, **sets}}
    with pytest.raises(RecipeError, match=message):
        from_dict(raw)


def test_pretrain_mlm_refuses_it_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TFCLI_QUIET", "1")
    (tmp_path / "train.src").write_text("a b c\n")
    args = ["pretrain-mlm", "--set", "data.text=train.src", "--set", "train.guided_attention=1",
            "--max-steps", "1", "--run-dir", "r"]  # fmt: skip
    with pytest.raises(SystemExit) as exit_:
        main(args)
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip()]
    assert exit_.value.code not in (0, None) and len(lines) == 1, err
    assert lines[0].startswith("Error: ") and "a masked LM has none" in lines[0], err
    assert not (tmp_path / "r").exists()


def guided_yaml(demo_dir, extra: str) -> None:  # noqa: F811
    text = (demo_dir / "tiny.yaml").read_text().replace("device: cpu}", f"device: cpu, {extra}}}")
    (demo_dir / "tiny.yaml").write_text(text)


def test_cli_guided_attention_trains_and_resumes_exactly(demo):  # noqa: F811
    """Weight fading over 8 updates, dropout on: straight 12 updates == 6, then --resume to 12."""
    guided_yaml(demo, "guided_attention: 1.0, guided_attention_decay: 8")
    cli_train("--run-dir", "straight", "--max-steps", "12")
    cli_train("--run-dir", "resumed", "--max-steps", "6")
    cli_train("--run-dir", "resumed", "--max-steps", "12", "--resume")
    a, b = losses(demo / "straight"), losses(demo / "resumed")
    assert [s for s, _ in b] == list(range(1, 13))
    for (_, la), (_, lb) in zip(a, b, strict=True):
        assert lb == pytest.approx(la, abs=1e-6)
    assert_same_weights(
        demo / "straight/checkpoints/step-00000012.safetensors",
        demo / "resumed/checkpoints/step-00000012.safetensors",
    )


@torch.no_grad()
def held_out_diagonality(run_dir) -> tuple[float, float]:
    """(mean guided penalty per token, mean diagonal_mass) of the decoder's cross-attention
    (head mean) on the validation pairs, teacher-forced with the references."""
    model, _ = load_model(run_dir / "checkpoints" / "best.safetensors")
    model.eval()
    data = open_split(run_dir / "data" / "valid")
    b = collate_parallel(data, np.arange(len(data)))
    _, (attn,) = model(b["src"], b["tgt"][:, :-1], None, (0,))
    penalty = guided_penalty([attn], b["src"], b["tgt"], 0.2).item()
    penalty /= int((b["tgt"][:, 1:] != PAD).sum())
    masses = []
    for i in range(len(data)):
        t, s = int((b["tgt"][i, 1:] != PAD).sum()), int((b["src"][i] != PAD).sum())
        masses.append(diagonal_mass(attn[i, :, :t, :s].mean(0)))
    return penalty, sum(masses) / len(masses)


@pytest.mark.slow
def test_trained_model_is_more_diagonal_with_the_loss_and_decode_draws_it(demo):  # noqa: F811
    """Same seed, data and 60 updates, with and without the loss; held-out attention."""
    steps = ["--max-steps", "60", "--set", "train.eval_every=60"]
    cli_train("--run-dir", "plain", *steps)
    guided_yaml(demo, "guided_attention: 2.0")
    cli_train("--run-dir", "guided", *steps)
    plain, guided = held_out_diagonality(demo / "plain"), held_out_diagonality(demo / "guided")
    assert guided[0] < 0.7 * plain[0]  # the penalty itself, lower = more diagonal
    assert guided[1] > plain[1] + 0.1  # attention mass within 0.1 of the diagonal
    for run in ("plain", "guided"):
        res = CliRunner().invoke(
            cli, ["decode", run, "--input", "demo/test.src", "--mode", "greedy",
                  "--attention", f"{run}.png"], catch_exceptions=False,
        )  # fmt: skip
        assert res.exit_code == 0, res.output
        assert (demo / f"{run}.png").read_bytes()[:4] == b"\x89PNG"

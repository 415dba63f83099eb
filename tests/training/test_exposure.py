"""Exposure-bias training (training/exposure.py, `train.exposure`): which decoder inputs are
replaced, how often, with what, and that teacher forcing, validation and --resume are untouched."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from test_loop import read_metrics
from test_seq2seq import corpus, tiny_model  # noqa: F401 (corpus is a fixture)
from test_state import assert_same_weights, cli_train, demo, losses  # noqa: F401 (demo: fixture)

from tfcli.recipe.schema import Exposure, ExposureSchedule, TrainConfig
from tfcli.tokenizer.vocab import BOS, EOS, PAD
from tfcli.training.exposure import ExposureBias, eligible, replacement_prob
from tfcli.training.masking import NUM_SPECIALS
from tfcli.training.seq2seq import Seq2SeqObjective, label_smoothed_nll

V = 60


def config(mode=Exposure.SCHEDULED_SAMPLING, **kw) -> TrainConfig:
    return TrainConfig(exposure=mode, **kw)


def padded_targets(rows: int = 400, width: int = 30, seed: int = 0) -> torch.Tensor:
    """(rows, width + 2) <s> ids </s> padded, 1..width words a row."""
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(1, width + 1, (rows,), generator=g)
    tgt = torch.full((rows, width + 2), PAD)
    tgt[:, 0] = BOS
    for i, n in enumerate(lens.tolist()):
        tgt[i, 1 : n + 1] = torch.randint(NUM_SPECIALS, V, (n,), generator=g)
        tgt[i, n + 1] = EOS
    return tgt


def drawn(cfg: TrainConfig, step: int, tgt: torch.Tensor, indices=None) -> dict:
    indices = np.arange(len(tgt)) if indices is None else indices
    return ExposureBias(cfg, V).draw({"tgt": tgt, "src": tgt}, step, indices)


def test_the_schedule_ramps_linearly_to_the_peak_or_starts_there():
    lin = config(exposure_prob=0.4, exposure_warmup=100)
    assert [replacement_prob(lin, s) for s in (0, 25, 100, 500)] == pytest.approx(
        [0.0, 0.1, 0.4, 0.4]
    )
    const = config(
        exposure_prob=0.4, exposure_warmup=100, exposure_schedule=ExposureSchedule.CONSTANT
    )
    assert replacement_prob(const, 0) == replacement_prob(const, 7) == 0.4
    assert replacement_prob(config(exposure_prob=0.3, exposure_warmup=0), 0) == 0.3


@pytest.mark.parametrize("step", [0, 250, 1000, 5000])
def test_the_replacement_rate_follows_the_schedule_within_a_few_sigma(step):
    cfg = config(exposure_prob=0.3, exposure_warmup=1000)
    tgt = padded_targets()
    n = int(eligible(tgt).sum())  # ~6000 eligible tokens
    p = replacement_prob(cfg, step)
    m = len(drawn(cfg, step, tgt)["exposure_at"])
    sigma = math.sqrt(n * p * (1 - p))
    assert abs(m - n * p) <= 4 * sigma + 1e-9, (m, n * p, sigma)


@pytest.mark.parametrize("mode", [Exposure.SCHEDULED_SAMPLING, Exposure.RANDOM_TOKENS])
def test_bos_padding_and_untrained_inputs_are_never_replaced(mode):
    tgt = padded_targets(rows=50)
    b = drawn(config(mode, exposure_prob=1.0, exposure_warmup=0), 3, tgt)
    tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]
    at = b["exposure_at"]
    # probability 1: exactly the word tokens of tgt_in, and nothing else
    words = (tgt_in >= NUM_SPECIALS).reshape(-1).nonzero().squeeze(1)
    assert at.tolist() == words.tolist()
    assert not (tgt_in.reshape(-1)[at] == BOS).any() and not (tgt_in.reshape(-1)[at] == PAD).any()
    assert (at % tgt_in.shape[1] >= 1).all() and (tgt_out.reshape(-1)[at] != PAD).all()


def test_the_draws_are_a_function_of_seed_step_and_batch_only():
    tgt, cfg = padded_targets(rows=40), config(Exposure.RANDOM_TOKENS, exposure_warmup=0)
    torch.manual_seed(123)  # the global RNG plays no part
    a = drawn(cfg, 7, tgt)
    torch.manual_seed(456)
    b = drawn(cfg, 7, tgt)
    assert torch.equal(a["exposure_at"], b["exposure_at"])
    assert torch.equal(a["exposure_ids"], b["exposure_ids"])
    other_step = drawn(cfg, 8, tgt)["exposure_at"]
    other_batch = drawn(cfg, 7, tgt, np.arange(40) + 1)["exposure_at"]
    other_seed = drawn(dataclasses.replace(cfg, seed=2), 7, tgt)["exposure_at"]
    for o in (other_step, other_batch, other_seed):
        assert not torch.equal(o, a["exposure_at"])


def test_random_tokens_are_non_special_ids_mixed_in_at_the_chosen_positions():
    tgt = padded_targets(rows=40)
    ex = ExposureBias(config(Exposure.RANDOM_TOKENS, exposure_prob=0.5, exposure_warmup=0), V)
    b = ex.draw({"tgt": tgt, "src": tgt}, 0, np.arange(40))
    ids = b["exposure_ids"]
    assert len(ids) == len(b["exposure_at"]) > 0
    assert ((ids >= NUM_SPECIALS) & (ids < V)).all()
    mixed = ex.decoder_inputs(torch.nn.Identity(), b)  # no model pass for random tokens
    expected = tgt[:, :-1].clone().reshape(-1)
    expected[b["exposure_at"]] = ids
    assert torch.equal(mixed.reshape(-1), expected)
    assert torch.equal(tgt[:, 0], torch.full((40,), BOS))  # the batch itself is not modified


def with_exposure(recipe, mode, **kw):
    return dataclasses.replace(recipe, train=dataclasses.replace(recipe.train, exposure=mode, **kw))


def test_scheduled_sampling_feeds_the_teacher_forced_prediction_of_each_position(corpus):  # noqa: F811
    recipe, train, valid, tok = corpus
    model = tiny_model(recipe, tok).eval()  # no dropout: both passes see the same function
    r = with_exposure(recipe, Exposure.SCHEDULED_SAMPLING, exposure_prob=0.5, exposure_warmup=0)
    obj = Seq2SeqObjective(train, valid, r, tok)
    idx = obj.train_batches(0, 0, 1)[0]
    b = obj.collate(idx)
    at = b["exposure_at"]
    assert len(at) > 0
    tgt_in = b["tgt"][:, :-1]
    with torch.no_grad():
        mixed = obj.exposure.decoder_inputs(model, b)
        pred = model(b["src"], tgt_in).argmax(-1)  # (B, T) full teacher-forced pass
    expected = tgt_in.clone().reshape(-1)
    expected[at] = pred.reshape(-1)[at - 1]  # the model's guess for the token at each position
    assert torch.equal(mixed.reshape(-1), expected)
    assert not torch.equal(mixed, tgt_in)
    loss, stats = obj.loss(model, b)  # second pass: targets unchanged
    assert stats["tokens"] == len(b["target"]) and torch.isfinite(loss)


def test_none_is_teacher_forcing_exactly_and_validation_is_unaffected(corpus):  # noqa: F811
    recipe, train, valid, tok = corpus
    model = tiny_model(recipe, tok).eval()
    none = Seq2SeqObjective(train, valid, recipe, tok)
    assert recipe.train.exposure is Exposure.NONE and none.exposure is None
    idx = none.train_batches(0, 0, 1)[0]
    b = none.collate(idx)
    assert not any(k.startswith("exposure") for k in b)
    with torch.no_grad():
        loss, _ = none.loss(model, b)
        logits = model(b["src"], b["tgt"][:, :-1], b["select"])
        ref, _ = label_smoothed_nll(logits, b["target"], recipe.train.label_smoothing)
        assert loss.item() == ref.item()
        # scheduled sampling at probability 0 (the first update of a linear ramp) is the same
        ss = Seq2SeqObjective(train, valid, with_exposure(recipe, Exposure.SCHEDULED_SAMPLING), tok)
        b0 = ss.collate(idx)
        assert len(b0["exposure_at"]) == 0 and ss.loss(model, b0)[0].item() == loss.item()
    with torch.no_grad():  # as validation.py runs it
        recipe_nb = dataclasses.replace(
            recipe, train=dataclasses.replace(recipe.train, eval_bleu=False)
        )
        ev_none = Seq2SeqObjective(train, valid, recipe_nb, tok).evaluate(model)
        ss_nb = with_exposure(
            recipe_nb, Exposure.RANDOM_TOKENS, exposure_prob=1.0, exposure_warmup=0
        )
        assert Seq2SeqObjective(train, valid, ss_nb, tok).evaluate(model) == ev_none


def test_cli_scheduled_sampling_trains_and_resumes_exactly(demo):  # noqa: F811
    """Linear ramp over 6 updates, dropout on: straight 12 updates == 6, then --resume to 12."""
    text = (
        (demo / "tiny.yaml")
        .read_text()
        .replace(
            "device: cpu}",
            "device: cpu, exposure: scheduled_sampling, exposure_prob: 0.5, exposure_warmup: 6}",
        )
    )
    (demo / "tiny.yaml").write_text(text)
    cli_train("--run-dir", "straight", "--max-steps", "12")
    cli_train("--run-dir", "resumed", "--max-steps", "6")
    cli_train("--run-dir", "resumed", "--max-steps", "12", "--resume")
    a, b = losses(demo / "straight"), losses(demo / "resumed")
    assert [s for s, _ in b] == list(range(1, 13))
    assert all(math.isfinite(x) for _, x in a)
    for (_, la), (_, lb) in zip(a, b, strict=True):
        assert lb == pytest.approx(la, abs=1e-6)
    va, vb = read_metrics(demo / "straight", "valid"), read_metrics(demo / "resumed", "valid")
    by_step = {r["step"]: r["loss"] for r in vb}  # the resumed run also evaluated at step 6
    assert [by_step[r["step"]] for r in va] == pytest.approx([r["loss"] for r in va], abs=1e-6)
    assert_same_weights(
        demo / "straight/checkpoints/step-00000012.safetensors",
        demo / "resumed/checkpoints/step-00000012.safetensors",
    )

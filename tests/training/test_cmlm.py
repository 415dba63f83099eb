"""The conditional masked LM objective (training/cmlm.py): how many and which target positions
are masked, the loss, validation's length metrics, the NAT refusals, and exact --resume."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_loop import read_metrics
from test_seq2seq import corpus  # noqa: F401 (a fixture)
from test_state import assert_same_weights, cli_train, demo, losses  # noqa: F401 (demo: fixture)

from tfcli.errors import RecipeError
from tfcli.model.build import build_model
from tfcli.model.config import spec_from_recipe
from tfcli.recipe.loader import from_dict
from tfcli.tokenizer.vocab import BOS, EOS, MASK, PAD
from tfcli.training.cmlm import (
    CMLMObjective,
    best_lengths,
    draw_masks,
    mask_generator,
    masked_batch,
)
from tfcli.training.seq2seq import label_smoothed_nll


def targets(lengths: list[int], width: int, seed: int = 0) -> torch.Tensor:
    """(B, width) `ids </s>` rows of the given lengths (</s> counted), PAD after."""
    g = torch.Generator().manual_seed(seed)
    out = torch.full((len(lengths), width), PAD)
    for i, n in enumerate(lengths):
        out[i, : n - 1] = torch.randint(5, 50, (n - 1,), generator=g)
        out[i, n - 1] = EOS
    return out


def test_mask_counts_are_uniform_in_1_to_n_and_positions_uniform():
    """20,000 draws for one target of n = 8 positions: k is uniform on 1..8 (each count within
    5 sigma of 2,500), so each position is masked with probability E[k] / n = 4.5 / 8; padding
    never; every draw masks at least one position."""
    n, draws = 8, 20_000
    tgt = targets([n] * draws, n + 3)
    masked = draw_masks(tgt, torch.Generator().manual_seed(1))
    k = masked.sum(1)
    assert int(k.min()) == 1 and int(k.max()) == n
    counts = torch.bincount(k, minlength=n + 1)[1:].double()
    sigma = math.sqrt(draws * (1 / n) * (1 - 1 / n))
    assert ((counts - draws / n).abs() < 5 * sigma).all(), counts
    per_position = masked[:, :n].double().mean(0)
    p = (n + 1) / 2 / n
    assert ((per_position - p).abs() < 5 * math.sqrt(p * (1 - p) / draws)).all(), per_position
    assert not masked[:, n:].any()


def test_masks_follow_each_rows_own_length_and_the_seed():
    tgt = targets([1, 2, 5, 9], 9)
    a = draw_masks(tgt, mask_generator(3, 7, np.arange(4)))
    assert (a.sum(1) >= 1).all() and not a[tgt == PAD].any()
    assert a[0].tolist() == [True] + [False] * 8  # a one-position target: always masked
    again = draw_masks(tgt, mask_generator(3, 7, np.arange(4)))
    assert torch.equal(a, again), "the same (seed, step, batch) draws the same masks"
    others = [draw_masks(tgt, mask_generator(3, s, np.arange(4))) for s in range(8, 20)]
    assert any(not torch.equal(a, o) for o in others), "another step draws others"


def test_masked_batch_puts_mask_where_the_loss_reads_and_keeps_the_rest():
    tgt = torch.cat([torch.full((3, 1), BOS), targets([3, 6, 4], 6)], 1)  # <s> ids </s>
    b = masked_batch({"src": tgt, "tgt": tgt}, torch.Generator().manual_seed(0))
    flat_in, flat_gold = b["dec_in"].reshape(-1), tgt[:, 1:].reshape(-1)
    assert torch.equal(flat_in[b["select"]], torch.full_like(b["select"], MASK))
    assert torch.equal(b["target"], flat_gold[b["select"]])
    keep = torch.ones_like(flat_in, dtype=torch.bool)
    keep[b["select"]] = False
    assert torch.equal(flat_in[keep], flat_gold[keep]), "unmasked positions stay gold"
    assert b["lengths"].tolist() == [3, 6, 4] and b["tokens"] == len(b["select"])
    assert BOS not in b["dec_in"].tolist()[0], "no <s> in the decoder sequence"


def nat_recipe(recipe, **train):
    model = dataclasses.replace(recipe.model, decoder="non_autoregressive", dropout=0.0)
    return dataclasses.replace(
        recipe, model=model, train=dataclasses.replace(recipe.train, **train)
    )


def nat_model(recipe, tok):
    torch.manual_seed(0)
    v = tok.get_vocab_size()
    return build_model(spec_from_recipe(recipe.model, "seq2seq", v, v))


def test_loss_is_masked_token_loss_plus_weighted_mean_length_loss(corpus):  # noqa: F811
    recipe, train, valid, tok = corpus
    r = nat_recipe(recipe, length_loss_weight=0.3)
    obj, model = CMLMObjective(train, valid, r, tok), nat_model(r, tok)
    b = obj.collate(obj.train_batches(0, 0, 1)[0])
    loss, stats = obj.loss(model, b)
    logits, length_logits = model(b["src"], b["dec_in"])  # every position, then pick by hand
    tok_loss, nll = label_smoothed_nll(logits.reshape(-1, logits.size(-1))[b["select"]],
                                       b["target"], r.train.label_smoothing)  # fmt: skip
    length_mean = F.cross_entropy(length_logits, b["lengths"])
    expected = tok_loss / stats["tokens"] + 0.3 * length_mean
    torch.testing.assert_close(loss / stats["tokens"], expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(stats["nll"], nll)
    assert stats["tokens"] == len(b["select"]) > 0


def test_validation_reports_length_accuracy_and_error(corpus):  # noqa: F811
    recipe, train, valid, tok = corpus
    r = nat_recipe(recipe, eval_bleu=True, eval_max_sentences=6)
    r = dataclasses.replace(r, decode=dataclasses.replace(r.decode, iterations=2, length_beam=2))
    obj, model = CMLMObjective(train, valid, r, tok), nat_model(r, tok)
    with torch.no_grad():
        out = obj.evaluate(model.eval())
        again = obj.evaluate(model)
    assert out == again, "validation masks are fixed: the same model scores the same"
    assert {"loss", "nll", "ppl", "length_acc", "length_mae", "bleu", "chrf"} <= set(out)
    # length metrics computed by hand over the whole validation split
    src = [valid.src[i].tolist() + [EOS] for i in range(len(valid))]
    gold = torch.tensor([len(valid.tgt[i]) + 1 for i in range(len(valid))])
    with torch.no_grad():
        guesses = []
        for row in src:
            memory, mask = model.encode(torch.tensor([row]))
            guesses.append(int(best_lengths(model.predict_length(memory, mask))[0]))
    guess = torch.tensor(guesses)
    assert out["length_acc"] == pytest.approx(float((guess == gold).double().mean()))
    assert out["length_mae"] == pytest.approx(float((guess - gold).abs().double().mean()))
    assert obj.primary_metric == "bleu"


def test_exposure_remedies_are_refused_for_a_non_autoregressive_decoder():
    raw = {"model": {"decoder": "non_autoregressive"}, "train": {"exposure": "random_tokens"}}
    with pytest.raises(RecipeError) as e:
        from_dict(raw)
    lines = [line for line in str(e.value).splitlines() if "train.exposure" in line]
    assert len(lines) == 1 and "non_autoregressive" in lines[0]


def test_cli_nat_training_resumes_exactly(demo):  # noqa: F811
    """Dropout on, masks drawn per (seed, step, batch): straight 8 updates == 4 + --resume to 8."""
    text = (demo / "tiny.yaml").read_text()
    text = text.replace("decoder_layers: 1,", "decoder_layers: 1, decoder: non_autoregressive,")
    text = text.replace("device: cpu}", "device: cpu, eval_bleu: false}")
    (demo / "tiny.yaml").write_text(text)
    cli_train("--run-dir", "straight", "--max-steps", "8")
    cli_train("--run-dir", "resumed", "--max-steps", "4")
    cli_train("--run-dir", "resumed", "--max-steps", "8", "--resume")
    a, b = losses(demo / "straight"), losses(demo / "resumed")
    assert [s for s, _ in b] == list(range(1, 9))
    for (_, la), (_, lb) in zip(a, b, strict=True):
        assert lb == pytest.approx(la, abs=1e-6)
    va, vb = read_metrics(demo / "straight", "valid"), read_metrics(demo / "resumed", "valid")
    assert {"length_acc", "length_mae"} <= set(va[-1])
    assert vb[-1]["loss"] == pytest.approx(va[-1]["loss"], abs=1e-6)
    assert_same_weights(
        demo / "straight/checkpoints/step-00000008.safetensors",
        demo / "resumed/checkpoints/step-00000008.safetensors",
    )

"""The translation objective (tfcli.training.seq2seq) on a small encoded demo corpus."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tfcli.data.split import open_split
from tfcli.demo import write_demo
from tfcli.model.build import build_model
from tfcli.model.config import spec_from_recipe
from tfcli.pipeline import ensure_encoded, ensure_tokenizer
from tfcli.recipe.loader import from_dict
from tfcli.tokenizer.vocab import BOS, EOS, PAD, load_tokenizer
from tfcli.training.seq2seq import Seq2SeqObjective, label_smoothed_nll


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """(recipe, train split, valid split, tokenizer) for 600 demo pairs, encoded once."""
    root = tmp_path_factory.mktemp("s2s")
    write_demo(root / "demo", n_train=600, n_valid=40, n_test=10, n_mono=10, n_mono_valid=10)
    d = root / "demo"
    recipe = from_dict({
        "run_dir": str(root / "run"),
        "data": {"src": [str(d / "train.src")], "tgt": [str(d / "train.tgt")],
                 "valid_src": [str(d / "valid.src")], "valid_tgt": [str(d / "valid.tgt")]},
        "tokenizer": {"vocab_size": 300},
        "model": {"d_model": 32, "n_heads": 2, "d_ff": 64, "encoder_layers": 1,
                  "decoder_layers": 1},
        "train": {"max_tokens": 400, "eval_max_sentences": 12, "seed": 3},
    })  # fmt: skip
    toks = ensure_tokenizer(recipe, kind="parallel")
    splits = ensure_encoded(recipe, kind="parallel")
    tok = load_tokenizer(toks["tgt"])
    return recipe, open_split(splits["train"]), open_split(splits["valid"]), tok


def tiny_model(recipe, tok):
    torch.manual_seed(0)
    v = tok.get_vocab_size()
    return build_model(spec_from_recipe(recipe.model, "seq2seq", v, v))


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_label_smoothed_nll_matches_torch_cross_entropy(eps):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 11, generator=g)
    target = torch.randint(5, 11, (3, 5), generator=g)
    target[0, 3:] = PAD
    target[2, 1:] = PAD
    loss, nll = label_smoothed_nll(logits, target, eps)
    flat = logits.flatten(0, 1), target.flatten()
    expected = F.cross_entropy(*flat, ignore_index=PAD, label_smoothing=eps, reduction="sum")
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(nll, F.cross_entropy(*flat, ignore_index=PAD, reduction="sum"))


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_label_smoothed_nll_gradient_matches_autograd(eps):
    """The hand-written backward equals autograd through torch's own cross_entropy."""
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 6, 13, generator=g, dtype=torch.float64)
    target = torch.randint(5, 13, (4, 6), generator=g)
    target[1, 2:] = PAD
    a = logits.clone().requires_grad_()
    (label_smoothed_nll(a, target, eps)[0] * 0.7).backward()
    b = logits.clone().requires_grad_()
    ref = F.cross_entropy(b.flatten(0, 1), target.flatten(), ignore_index=PAD,
                          label_smoothing=eps, reduction="sum")  # fmt: skip
    (ref * 0.7).backward()
    torch.testing.assert_close(a.grad, b.grad)


def test_label_smoothed_nll_gradient_ignores_padding():
    logits = torch.randn(2, 4, 7, requires_grad=True)
    target = torch.tensor([[5, 6, PAD, PAD], [6, 5, 5, PAD]])
    loss, _ = label_smoothed_nll(logits, target, 0.1)
    loss.backward()
    assert logits.grad[target == PAD].abs().max() == 0
    assert logits.grad[target != PAD].abs().min() > 0


def test_batches_are_deterministic_reshuffled_and_sharded(corpus):
    recipe, train, valid, tok = corpus
    obj = Seq2SeqObjective(train, valid, recipe, tok)
    e0 = obj.train_batches(0, 0, 1)
    assert [b.tolist() for b in e0] == [b.tolist() for b in obj.train_batches(0, 0, 1)]
    assert [b.tolist() for b in e0] != [b.tolist() for b in obj.train_batches(1, 0, 1)]
    assert sorted(np.concatenate(e0).tolist()) == list(range(len(train)))  # each pair once
    r0, r1 = obj.train_batches(0, 0, 2), obj.train_batches(0, 1, 2)
    assert len(r0) == len(r1)
    assert {i for b in r0 + r1 for i in b.tolist()} == set(range(len(train)))


def test_collate_counts_target_tokens_on_the_host(corpus):
    recipe, train, valid, tok = corpus
    obj = Seq2SeqObjective(train, valid, recipe, tok)
    idx = obj.train_batches(0, 0, 1)[0]
    b = obj.collate(idx)
    src, tgt = b["src"], b["tgt"]
    assert (tgt[:, 0] == BOS).all() and (src[:, 0] != PAD).all()
    assert b["tokens"] == sum(len(train.tgt[int(i)]) + 1 for i in idx)  # ids + </s> per row
    assert b["throughput"] == b["tokens"] + sum(len(train.src[int(i)]) + 1 for i in idx)
    assert int((tgt == EOS).sum()) == len(idx)
    tgt_out = tgt[:, 1:].flatten()  # select: the non-pad positions the loss is computed on
    assert torch.equal(b["select"], (tgt_out != PAD).nonzero().squeeze(1))
    assert torch.equal(b["target"], tgt_out[tgt_out != PAD]) and len(b["target"]) == b["tokens"]
    assert src.shape[0] * max(src.shape[1], tgt.shape[1]) <= recipe.train.max_tokens


def test_loss_is_summed_over_non_pad_target_tokens(corpus):
    recipe, train, valid, tok = corpus
    obj = Seq2SeqObjective(train, valid, recipe, tok)
    model = tiny_model(recipe, tok).eval()
    b = obj.collate(obj.train_batches(0, 0, 1)[0])
    loss, stats = obj.loss(model, b)
    logits = model(b["src"], b["tgt"][:, :-1])
    expected = F.cross_entropy(logits.flatten(0, 1), b["tgt"][:, 1:].flatten(), ignore_index=PAD,
                               label_smoothing=0.1, reduction="sum")  # fmt: skip
    torch.testing.assert_close(loss, expected)
    assert stats["tokens"] == b["tokens"]
    # an untrained model is about uniform: per-token NLL ~ log(vocab)
    assert abs(float(stats["nll"]) / stats["tokens"] - np.log(tok.get_vocab_size())) < 1.0


def test_evaluate_reports_loss_perplexity_bleu_chrf(corpus):
    recipe, train, valid, tok = corpus
    obj = Seq2SeqObjective(train, valid, recipe, tok)
    assert obj.primary_metric == "bleu" and obj.higher_is_better
    model = tiny_model(recipe, tok).eval()
    with torch.no_grad():
        m = obj.evaluate(model)
    assert set(m) == {"loss", "nll", "ppl", "bleu", "chrf"}
    assert m["ppl"] == pytest.approx(np.exp(m["nll"]))
    assert 0.0 <= m["bleu"] <= 100.0 and 0.0 <= m["chrf"] <= 100.0
    assert m["loss"] > 0 and m["nll"] > 0


def test_without_bleu_or_validation_the_primary_metric_is_loss(corpus):
    recipe, train, valid, tok = corpus
    no_bleu = from_dict({**_raw(recipe), "train": {"eval_bleu": False}})
    obj = Seq2SeqObjective(train, valid, no_bleu, tok)
    assert obj.primary_metric == "loss" and not obj.higher_is_better
    with torch.no_grad():
        assert set(obj.evaluate(tiny_model(recipe, tok).eval())) == {"loss", "nll", "ppl"}
    none = Seq2SeqObjective(train, None, recipe, tok)
    assert none.primary_metric == "loss" and none.evaluate(tiny_model(recipe, tok)) == {}


def _raw(recipe) -> dict:
    from tfcli.recipe.loader import to_dict

    return to_dict(recipe)

"""MaskedLM: shares src_embed/encoder with EncoderDecoder, tied BERT head, padding, selection."""

from __future__ import annotations

import torch

from .helpers import random_batch


def test_parameter_names_match_the_seq2seq_encoder(make_model) -> None:
    mlm, s2s = make_model("mlm"), make_model("seq2seq")
    shared = ("src_embed.", "encoder.")
    mlm_state = {k: v.shape for k, v in mlm.state_dict().items() if k.startswith(shared)}
    s2s_state = {k: v.shape for k, v in s2s.state_dict().items() if k.startswith(shared)}
    assert mlm_state == s2s_state and len(mlm_state) > 10
    # Warm start is then a plain load of those keys.
    s2s.load_state_dict({k: mlm.state_dict()[k] for k in mlm_state}, strict=False)
    ids = random_batch(2, 6)
    torch.testing.assert_close(s2s.encode(ids)[0], mlm.encoder(mlm.src_embed(ids), None))


def test_head_is_tied_with_its_own_bias(make_model) -> None:
    mlm = make_model("mlm")
    assert mlm.head.proj.weight is mlm.src_embed.tokens.weight
    assert mlm.head.proj.bias.shape == (40,)
    names = dict(mlm.named_parameters())
    assert "head.proj.bias" in names and "head.proj.weight" not in names


@torch.no_grad()
def test_select_returns_logits_of_selected_positions(make_model) -> None:
    mlm = make_model("mlm", positions="learned")
    ids = random_batch(3, 8, lengths=[8, 5, 3])
    select = torch.zeros(3, 8, dtype=torch.bool)
    select[0, [1, 6]] = True
    select[2, 0] = True
    full = mlm(ids)
    assert full.shape == (3, 8, 40)
    torch.testing.assert_close(mlm(ids, select), full[select], rtol=0, atol=1e-5)


@torch.no_grad()
def test_padding_invariance(make_model) -> None:
    mlm = make_model("mlm", window=2, norm="pre")
    ids = random_batch(2, 6, lengths=[6, 3])
    padded = torch.cat([ids, torch.zeros(2, 4, dtype=torch.long)], 1)
    real = ids != 0
    torch.testing.assert_close(mlm(padded)[:, :6][real], mlm(ids)[real], rtol=0, atol=1e-5)


def test_gradient_reaches_every_parameter(make_model) -> None:
    mlm = make_model("mlm", positions="learned", dropout=0.1).train()
    ids = random_batch(3, 8, lengths=[8, 5, 3])
    mlm(ids).logsumexp(-1).sum().backward()
    for name, p in mlm.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name

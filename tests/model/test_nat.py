"""The non-autoregressive model (model/nat.py, built from `model.decoder: non_autoregressive`):
the same core as the autoregressive one, a decoder without the causal mask, padding masked."""

from __future__ import annotations

import pytest
import torch

from tfcli.errors import TfcliError
from tfcli.model.build import build_model, count_parameters
from tfcli.model.cache import KVCache
from tfcli.model.nat import NonAutoregressive
from tfcli.model.seq2seq import EncoderDecoder
from tfcli.tokenizer.vocab import MASK, PAD

from .helpers import random_batch, tiny_spec


def test_the_builder_picks_the_decoder_from_the_spec_and_shares_the_core(make_model):
    ar = make_model()
    nat = make_model(decoder="non_autoregressive")
    assert type(ar) is EncoderDecoder and isinstance(nat, NonAutoregressive)
    assert ar.decoder.causal and not nat.decoder.causal
    assert nat.generator.proj.weight is nat.tgt_embed.tokens.weight, "the tied output head"
    names = lambda m: {k for k, _ in m.named_parameters()}  # noqa: E731
    assert names(nat) - names(ar) == {"length.proj.weight", "length.proj.bias"}
    counts = count_parameters(nat)
    assert counts["length"] == 32 * 64 + 64  # d_model x max_positions classes, + bias
    assert counts["total"] == count_parameters(ar)["total"] + counts["length"]


def test_the_default_path_is_unchanged_by_the_new_field():
    torch.manual_seed(0)
    a = build_model(tiny_spec())
    torch.manual_seed(0)
    b = build_model(tiny_spec(decoder="autoregressive"))
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)


def test_every_position_sees_the_later_ones(make_model):
    nat = make_model(decoder="non_autoregressive")
    src = random_batch(1, 6)
    tgt = torch.tensor([[MASK, 7, 8, MASK]])
    changed = tgt.clone()
    changed[0, 3] = 9  # only the last position differs
    memory, mask = nat.encode(src)
    a, b = nat.decode(tgt, memory, mask), nat.decode(changed, memory, mask)
    assert not torch.allclose(a[0, 0], b[0, 0]), "position 0 attends to position 3"


def test_padding_of_shorter_targets_changes_nothing(make_model):
    nat = make_model(decoder="non_autoregressive")
    src = random_batch(2, 5, lengths=[5, 3])
    tgt = torch.tensor([[MASK, 7, MASK, 8, 9], [MASK, 10, MASK, PAD, PAD]])
    both, lengths = nat(src, tgt)
    alone, alone_lengths = nat(src[1:, :3], tgt[1:, :3])
    torch.testing.assert_close(both[1, :3], alone[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lengths[1], alone_lengths[0], atol=1e-5, rtol=1e-5)
    assert lengths.shape == (2, 64)


def test_cached_and_uncached_encoder_outputs_agree(make_model):
    """decode() on a memory encoded once == forward() re-encoding; `select` picks rows of it."""
    nat = make_model(decoder="non_autoregressive")
    src, tgt = random_batch(3, 7, lengths=[7, 4, 2]), random_batch(3, 5, lengths=[5, 5, 3])
    memory, mask = nat.encode(src)
    cached = nat.decode(tgt, memory, mask)
    fresh, _ = nat(src, tgt)
    torch.testing.assert_close(cached, fresh)
    pick = torch.tensor([0, 6, 12])
    selected, _ = nat(src, tgt, pick)
    torch.testing.assert_close(selected, fresh.flatten(0, 1)[pick])


def test_a_step_by_step_cache_is_refused(make_model):
    nat = make_model(decoder="non_autoregressive")
    memory, mask = nat.encode(random_batch(1, 3))
    with pytest.raises(TfcliError, match="at once"):
        nat.decode(torch.tensor([[MASK]]), memory, mask, cache=KVCache(2))


def test_the_memory_cache_and_selected_positions_give_the_uncached_logits(make_model):
    """Passes sharing a MemoryCache (cross-attention keys/values projected once) equal passes
    without one; `select` returns exactly the selected rows of the full logits."""
    nat = make_model(decoder="non_autoregressive")
    src = random_batch(3, 7, lengths=[7, 4, 2])
    memory, mask = nat.encode(src)
    cache = nat.new_cache()
    for lengths in ([5, 5, 3], [4, 2, 5], [5, 1, 1]):
        tgt = random_batch(3, 5, lengths=lengths)
        plain = nat.decode(tgt, memory, mask)
        torch.testing.assert_close(nat.decode(tgt, memory, mask, cache), plain)
        pick = tgt != PAD
        torch.testing.assert_close(nat.decode(tgt, memory, mask, cache, select=pick), plain[pick])
    assert cache.length == 0 and cache.layers[0].self_k is None

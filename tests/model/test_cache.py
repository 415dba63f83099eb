"""KVCache bookkeeping: in-place appends, growth, reorder (repeat, permute, shrink)."""

from __future__ import annotations

import torch

from tfcli.model.cache import KVCache, LayerKV


def test_append_writes_in_place_and_returns_the_prefix() -> None:
    layer = LayerKV()
    a = torch.randn(2, 3, 1, 4)
    k, v = layer.append(a, -a, 0)
    assert k.shape == (2, 3, 1, 4) and torch.equal(k, a) and torch.equal(v, -a)
    buffer = layer.self_k
    b = torch.randn(2, 3, 2, 4)
    k, _ = layer.append(b, b, 1)
    assert layer.self_k is buffer  # no reallocation while it fits
    assert torch.equal(k, torch.cat([a, b], 2))


def test_growth_keeps_contents() -> None:
    layer = LayerKV()
    steps = [torch.full((1, 1, 1, 2), float(i)) for i in range(70)]
    for i, s in enumerate(steps):
        k, _ = layer.append(s, s, i)
    assert torch.equal(k, torch.cat(steps, 2))
    assert layer.self_k.shape[2] >= 70


def test_reorder_selects_rows_everywhere() -> None:
    cache = KVCache(2)
    for layer in cache.layers:
        x = torch.arange(3.0)[:, None, None, None].expand(3, 2, 1, 4)
        layer.append(x, x + 10, 0)
        layer.cross_k, layer.cross_v = x.clone(), x.clone()
    cache.advance(1)
    cache.reorder(torch.tensor([2, 2, 0, 1, 1]))
    assert cache.batch_size == 5 and cache.length == 1
    for layer in cache.layers:
        for t in (layer.self_k[:, :, :1], layer.cross_k):
            assert t[:, 0, 0, 0].tolist() == [2, 2, 0, 1, 1]
        assert layer.self_v[:, 0, 0, 0].tolist() == [12, 12, 10, 11, 11]
    cache.reorder(torch.tensor([3]))
    assert cache.batch_size == 1 and cache.layers[1].self_k[0, 0, 0, 0] == 1

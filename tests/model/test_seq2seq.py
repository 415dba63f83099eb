"""EncoderDecoder: cached incremental decoding equals the full pass, padding invariance, tying,
gradients, attention pictures, compile."""

from __future__ import annotations

import itertools

import pytest
import torch

from tfcli.errors import DataError

from .helpers import random_batch

SRC_LENGTHS = [7, 4, 2]
# The attention variants of issue 12 (model.positions / attention / attention_score), each one
# recipe value away from the paper's model; the decoder keeps full attention under Linformer.
VARIANTS = [
    dict(positions="relative"),
    dict(positions="relative", relative_values=True, max_relative_position=3),
    dict(positions="alibi"),
    dict(attention_score="additive"),
    dict(attention="linformer", linformer_k=8),
]


def _step_by_step(model, src: torch.Tensor, tgt: torch.Tensor, chunks: list[int]) -> torch.Tensor:
    """Decode tgt in pieces of the given sizes against one cache; logits concatenated."""
    memory, src_mask = model.encode(src)
    cache = model.new_cache()
    out, start = [], 0
    for n in chunks:
        out.append(model.decode(tgt[:, start : start + n], memory, src_mask, cache))
        start += n
    assert cache.length == tgt.shape[1]
    return torch.cat(out, dim=1)


@pytest.mark.parametrize(
    "variant,window", [(v, w) for v in VARIANTS for w in (0, 2) if not (w and "attention" in v)]
)
@torch.no_grad()
def test_cached_decoding_equals_full_forward_for_each_variant(make_model, variant, window) -> None:
    """The KV cache knows the new token's position: relative distances, ALiBi biases and
    additive scores against cached keys equal the full recomputation."""
    model = make_model(norm="pre", window=window, **variant)
    src = random_batch(3, 7, lengths=SRC_LENGTHS)
    tgt = random_batch(3, 10, seed=2)
    full = model(src, tgt)
    torch.testing.assert_close(_step_by_step(model, src, tgt, [1] * 10), full, rtol=0, atol=1e-5)
    torch.testing.assert_close(
        _step_by_step(model, src, tgt, [4, 1, 1, 4]), full, rtol=0, atol=1e-5
    )


@pytest.mark.parametrize(
    "norm,positions,window",
    list(itertools.product(["post", "pre"], ["sinusoidal", "learned", "rotary"], [0, 2])),
)
@torch.no_grad()
def test_cached_decoding_equals_full_forward(make_model, norm, positions, window) -> None:
    model = make_model(norm=norm, positions=positions, window=window)
    src = random_batch(3, 7, lengths=SRC_LENGTHS)
    tgt = random_batch(3, 10, seed=2)
    full = model(src, tgt)
    one_by_one = _step_by_step(model, src, tgt, [1] * 10)
    torch.testing.assert_close(one_by_one, full, rtol=0, atol=1e-5)
    # A prefix fed at once, then single steps (forced decoding / prompts), then a chunk.
    mixed = _step_by_step(model, src, tgt, [4, 1, 1, 4])
    torch.testing.assert_close(mixed, full, rtol=0, atol=1e-5)


@torch.no_grad()
def test_cache_grows_past_its_first_allocation(make_model) -> None:
    """40 steps cross the initial 32-position buffer: growth must keep earlier keys intact."""
    model = make_model(max_positions=64)
    src, tgt = random_batch(2, 5), random_batch(2, 40, seed=3)
    torch.testing.assert_close(
        _step_by_step(model, src, tgt, [1] * 40), model(src, tgt), rtol=0, atol=1e-5
    )


@pytest.mark.parametrize(
    "variant", [dict(positions="sinusoidal"), dict(positions="rotary"), *VARIANTS[:4]]
)
@torch.no_grad()
def test_reorder_equals_decoding_reordered_batch(make_model, variant) -> None:
    """Beam-search style: decode 3 steps, reorder rows (repeat, permute, drop), decode 3 more.
    Must equal decoding the reordered batch from scratch."""
    model = make_model(**variant)
    src = random_batch(3, 7, lengths=SRC_LENGTHS)
    tgt = random_batch(3, 6, seed=4)
    memory, src_mask = model.encode(src)
    for index in ([2, 0, 0, 1], [1, 2], [2]):  # grow (beams), permute+shrink, single survivor
        index = torch.tensor(index)
        cache = model.new_cache()
        for i in range(3):
            model.decode(tgt[:, i : i + 1], memory, src_mask, cache)
        cache.reorder(index)
        m, sm, t = memory[index], src_mask[index], tgt[index]
        steps = [model.decode(t[:, i : i + 1], m, sm, cache) for i in range(3, 6)]
        want = model(src[index], t)[:, 3:]
        torch.testing.assert_close(torch.cat(steps, 1), want, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "variant", [dict(window=0), dict(window=2), *VARIANTS, dict(positions="alibi", window=2)]
)
@torch.no_grad()
def test_padding_does_not_change_real_outputs(make_model, variant) -> None:
    model = make_model(**variant)
    src = random_batch(3, 7, lengths=SRC_LENGTHS)
    tgt = random_batch(3, 6, seed=5)
    tgt[1, 4:] = 0  # right-padded target
    padded_src = torch.cat([src, torch.zeros(3, 5, dtype=torch.long)], dim=1)
    padded_tgt = torch.cat([tgt, torch.zeros(3, 3, dtype=torch.long)], dim=1)
    base = model(src, tgt)
    more = model(padded_src, padded_tgt)[:, :6]
    real = tgt != 0
    torch.testing.assert_close(more[real], base[real], rtol=0, atol=1e-5)
    # And a sentence alone gives what it gives inside a padded batch.
    alone = model(src[2:3, : SRC_LENGTHS[2]], tgt[2:3])
    torch.testing.assert_close(alone[0], base[2], rtol=0, atol=1e-5)


@torch.no_grad()
def test_select_projects_only_the_chosen_positions(make_model) -> None:
    model = make_model()
    src = random_batch(3, 7, lengths=SRC_LENGTHS)
    tgt = random_batch(3, 6, seed=5)
    tgt[1, 4:] = 0
    full = model(src, tgt)  # (B, T, V)
    keep = tgt != 0
    by_mask = model(src, tgt, keep)
    by_index = model(src, tgt, keep.flatten().nonzero().squeeze(1))
    assert by_mask.shape == (int(keep.sum()), full.shape[-1])
    torch.testing.assert_close(by_mask, full[keep], rtol=0, atol=1e-5)
    torch.testing.assert_close(by_index, full[keep], rtol=0, atol=1e-5)


def test_shared_embeddings_are_one_tensor(make_model) -> None:
    model = make_model(share_embeddings=True)
    assert model.tgt_embed is model.src_embed
    w = model.src_embed.tokens.weight
    assert model.generator.proj.weight is w
    assert w.data_ptr() == model.tgt_embed.tokens.weight.data_ptr()
    names = [n for n, _ in model.named_parameters()]
    assert "src_embed.tokens.weight" in names and not any(n.startswith("generator") for n in names)


def test_separate_vocabularies(make_model) -> None:
    model = make_model(share_embeddings=False, src_vocab_size=30, tgt_vocab_size=50)
    assert model.tgt_embed is not model.src_embed
    assert model.src_embed.tokens.weight.shape == (30, 32)
    # The output projection is still tied to the target embeddings.
    assert model.generator.proj.weight is model.tgt_embed.tokens.weight
    logits = model(random_batch(2, 5, vocab=30), random_batch(2, 4, vocab=50))
    assert logits.shape == (2, 4, 50)


@pytest.mark.parametrize(
    "norm,variant",
    [("post", dict(positions="learned")), ("pre", dict(positions="rotary"))]
    + [("post", v) for v in VARIANTS],
)
def test_gradient_reaches_every_parameter(make_model, norm, variant) -> None:
    model = make_model(norm=norm, share_embeddings=False, dropout=0.1, **variant).train()
    src = random_batch(3, 7, lengths=SRC_LENGTHS)
    tgt = random_batch(3, 6, seed=6)
    model(src, tgt).logsumexp(-1).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@torch.no_grad()
def test_need_attention_gives_same_logits_and_distributions(make_model) -> None:
    model = make_model()
    src = random_batch(3, 7, lengths=SRC_LENGTHS)
    tgt = random_batch(3, 5, seed=7)
    memory, src_mask = model.encode(src)
    plain = model.decode(tgt, memory, src_mask)
    logits, attn = model.decode(tgt, memory, src_mask, need_attention=True)
    torch.testing.assert_close(logits, plain, rtol=0, atol=1e-5)
    assert len(attn) == 2 and attn[0].shape == (3, 4, 5, 7)
    torch.testing.assert_close(attn[1].sum(-1), torch.ones(3, 4, 5), rtol=0, atol=1e-5)
    assert (attn[0][1, :, :, SRC_LENGTHS[1] :] == 0).all()  # nothing on source padding
    # Also with a cache, one step at a time (decode --attention uses this).
    cache = model.new_cache()
    for i in range(5):
        step, a = model.decode(tgt[:, i : i + 1], memory, src_mask, cache, need_attention=True)
        torch.testing.assert_close(step[:, 0], plain[:, i], rtol=0, atol=1e-5)
        torch.testing.assert_close(a[0][:, :, 0], attn[0][:, :, i], rtol=0, atol=1e-5)


def test_positions_beyond_the_table_are_a_clear_error(make_model) -> None:
    model = make_model(max_positions=8)
    with pytest.raises(DataError, match="max_positions"):
        model(random_batch(1, 9), random_batch(1, 3))


@pytest.mark.parametrize(
    "variant",
    [dict(window=2, positions="rotary"), dict(window=2, positions="relative"), *VARIANTS[2:]],
)
def test_compiles_without_graph_breaks(make_model, variant) -> None:
    """fullgraph=True fails on any graph break in the training forward (eager backend: no C++
    toolchain needed, still runs dynamo's full tracing)."""
    torch._dynamo.reset()  # each variant is a new graph of the same code: no recompile limit
    model = make_model(norm="pre", dropout=0.1, **variant).train()
    src = random_batch(3, 7, lengths=SRC_LENGTHS)
    tgt = random_batch(3, 6, seed=8)
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    torch.manual_seed(0)
    logits = compiled(src, tgt)
    logits.sum().backward()
    assert logits.shape == (3, 6, 40)
    tgt[1, 4:] = 0  # training's path: only the non-pad targets are projected (select indices)
    select = (tgt != 0).flatten().nonzero().squeeze(1)
    picked = compiled(src, tgt, select)
    picked.sum().backward()
    assert picked.shape == (16, 40)


@pytest.mark.parametrize("variant", [dict(positions="rotary"), *VARIANTS])
def test_bf16_autocast_runs(make_model, variant) -> None:
    model = make_model(**variant)
    src, tgt = random_batch(2, 6), random_batch(2, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(src, tgt)
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits.float()).all()
    torch.testing.assert_close(logits.float(), model(src, tgt), rtol=0, atol=0.15)

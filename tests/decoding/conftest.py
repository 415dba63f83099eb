"""Tiny random models and source batches for the search tests (fixed seeds, float64 so that
cached and uncached paths agree to the last bit that matters for an argmax)."""

from __future__ import annotations

import pytest
import torch

from tfcli.model.build import build_model
from tfcli.model.config import ModelSpec
from tfcli.tokenizer.vocab import EOS, PAD


def tiny_model(
    vocab: int = 40, *, seed: int = 0, kind: str = "seq2seq", eos_bias: float = 2.0, **kw
):
    """A 2-layer model, eval mode, float64. `eos_bias` (an output bias on </s>) makes random
    sentences end at different steps, which exercises dropping finished rows."""
    torch.manual_seed(seed)
    # xavier: unit-scale logits at random, so greedy, beam and exhaustive search disagree often
    # enough to test them (N(0, 0.02) weights give a nearly flat softmax).
    args = dict(d_model=32, n_heads=4, d_ff=64, encoder_layers=2, decoder_layers=2, dropout=0.0,
                init="xavier")  # fmt: skip
    args.update(kw)
    spec = ModelSpec(kind=kind, src_vocab_size=vocab, tgt_vocab_size=vocab, **args)
    model = build_model(spec).double().eval()
    if kind == "seq2seq" and eos_bias:
        bias = torch.zeros(vocab, dtype=torch.float64)
        bias[EOS] = eos_bias
        model.generator.proj.bias = torch.nn.Parameter(bias)
    return model


def make_src(lengths: list[int], vocab: int, seed: int = 0) -> torch.Tensor:
    """(B, max+1) source ids: random non-special ids, then </s>, then PAD."""
    g = torch.Generator().manual_seed(seed)
    src = torch.full((len(lengths), max(lengths) + 1), PAD, dtype=torch.long)
    for i, n in enumerate(lengths):
        src[i, :n] = torch.randint(5, vocab, (n,), generator=g)
        src[i, n] = EOS
    return src


@pytest.fixture
def model():
    return tiny_model()


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest on one thread; on a busy shared machine a second intra-op
    thread mostly spins (10x slower here). Restored after each test."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

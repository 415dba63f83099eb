"""Multi-head scaled dot-product attention and the masks it takes.

Mask convention (one, everywhere): boolean, True = may attend, broadcastable to (B, 1, T_q, T_k).
`attention_mask` builds a stack's self-attention mask once per forward; layers only pass it on.
When no mask is needed it returns None (with `is_causal` for the plain causal case), so
scaled_dot_product_attention can pick the flash / memory-efficient kernels on GPU. A stack with
ALiBi positions turns the mask into a float bias (0 or -slope * distance where allowed, -inf
where not); SDPA and the explicit path take either kind.

Variants of the attention itself (relative positions, Linformer, additive scores) are small
`core` modules the builder hands to MultiHeadedAttention: the projections, rotary and the KV
cache stay here, and the default (core=None) runs SDPA as before, after one `is None` test.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tfcli.model.cache import LayerKV
from tfcli.model.positions import apply_rotary

# On CPU, PyTorch's fused attention runs the last (key length mod 16) keys of every row through
# a scalar tail loop: 15 keys cost 3.6x as much as 16 (one AVX-512 block of floats), 63 keys 2x as
# much as 64. Where a block is at least MIN_TAIL keys short of full, pad_keys rounds the keys up
# with masked zeros, which is cheaper than the tail even with the copy. Queries stay as they are,
# so only attention with many queries at once pads (a batch's encoder, a mask-predict pass that
# sees every position); one new query per step, or one short sentence, would pay the copy for
# too little work. Training does not pad: on a demo model's forward + backward steps it gained
# nothing beyond the noise (4%), and it would give up the causal kernel.
KEY_BLOCK = 16
MIN_TAIL = 8
MIN_QUERIES = 256


def subsequent_mask(size: int, device: torch.device | None = None) -> Tensor:
    """(1, 1, size, size) lower-triangular: position i may attend to positions <= i."""
    return torch.ones(size, size, dtype=torch.bool, device=device).tril()[None, None]


def bool_to_bias(mask: Tensor | None, is_causal: bool, like: Tensor) -> Tensor:
    """A bool mask (or is_causal over like's T_q == T_k, or nothing) as an additive float mask
    in like's dtype: 0 = may attend, -inf = may not. A float mask passes through; (1, 1, 1, 1)
    zeros when nothing is masked, so the result always broadcasts against the scores."""
    if is_causal:
        mask = subsequent_mask(like.shape[-2], like.device)
    if mask is None:
        return like.new_zeros(1, 1, 1, 1)
    if mask.dtype != torch.bool:
        return mask.to(like.dtype)
    return like.new_zeros(mask.shape).masked_fill(~mask, float("-inf"))


def attention_mask(
    pad_mask: Tensor | None,
    t_q: int,
    t_k: int,
    *,
    causal: bool,
    window: int,
    device: torch.device,
) -> tuple[Tensor | None, bool]:
    """Self-attention mask for queries at the last t_q of t_k positions -> (mask, is_causal).

    pad_mask: (B, 1, 1, t_k) True at real keys, or None. Queries sit at positions
    t_k - t_q .. t_k - 1 (t_q < t_k when continuing from a cache). With `window` > 0 a query
    sees keys within `window` positions (causal: only the past `window` and itself).
    The result is None when nothing must be masked, or a bool mask (B|1, 1, t_q, t_k).
    """
    if window == 0:
        if not causal:
            return pad_mask, False
        if pad_mask is None and t_q == t_k:
            return None, True  # lets SDPA use its causal kernels, no mask in memory
        if pad_mask is None and t_q == 1:
            return None, False  # one new token may see every cached position
    q_pos = torch.arange(t_k - t_q, t_k, device=device)[:, None]  # (t_q, 1)
    k_pos = torch.arange(t_k, device=device)[None, :]  # (1, t_k)
    if causal:
        allowed = k_pos <= q_pos  # (t_q, t_k)
    else:
        allowed = torch.ones(t_q, t_k, dtype=torch.bool, device=device)
    if window > 0:
        allowed = allowed & ((q_pos - k_pos).abs() <= window)
    mask = allowed[None, None]  # (1, 1, t_q, t_k)
    if pad_mask is not None:
        # A pad query far from any real token could see only pads (all-False row -> NaN in
        # softmax, and NaN * 0 still poisons real rows). Letting every query see itself keeps
        # rows finite; real queries already see themselves, so their outputs are unchanged.
        mask = (mask & pad_mask) | (q_pos == k_pos)
    return mask, False


class MultiHeadedAttention(nn.Module):
    """Multi-head attention on F.scaled_dot_product_attention.

    Self-attention uses one fused q/k/v projection; cross-attention a q projection and one fused
    k/v projection over the memory (cached once per decode). `rotary` (cos, sin) rotates q and k.
    `n_heads` divides `d_model`: `Architecture.problems` checks that once, before build_model.

    `core`, when given, replaces softmax(q k^T / sqrt(d)) v: it is called as
    `core(q, k, v, mask, is_causal, dropout_p, need_weights) -> (y, weights or None)` with
    q (B, H, T_q, hd) at the last T_q of the T_k key positions (after the cache) and returns
    y (B, H, T_q, hd).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        dropout: float,
        cross: bool = False,
        core: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.core = core
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.cross = cross
        self.dropout = dropout
        if cross:
            self.q_proj = nn.Linear(d_model, d_model)
            self.kv_proj = nn.Linear(d_model, 2 * d_model)
        else:
            self.qkv_proj = nn.Linear(d_model, 3 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def _split(self, x: Tensor, n: int) -> tuple[Tensor, ...]:
        """(B, T, n*D) -> n tensors (B, H, T, head_dim), views without copies."""
        b, t, _ = x.shape
        x = x.view(b, t, n, self.n_heads, self.head_dim)  # (B, T, n, H, hd)
        return x.permute(2, 0, 3, 1, 4).unbind(0)  # n x (B, H, T, hd)

    def _project(
        self, x: Tensor, memory: Tensor | None, cache: LayerKV | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        if not self.cross:
            return self._split(self.qkv_proj(x), 3)  # type: ignore[return-value]
        (q,) = self._split(self.q_proj(x), 1)
        if cache is not None and cache.cross_k is not None and cache.cross_v is not None:
            return q, cache.cross_k, cache.cross_v  # memory never changes while decoding
        assert memory is not None, "cross-attention needs the encoder memory"
        k, v = self._split(self.kv_proj(memory), 2)
        if cache is not None:
            cache.cross_k, cache.cross_v = k, v
        return q, k, v

    def forward(
        self,
        x: Tensor,
        *,
        mask: Tensor | None = None,
        is_causal: bool = False,
        memory: Tensor | None = None,
        rotary: tuple[Tensor, Tensor] | None = None,
        cache: LayerKV | None = None,
        offset: int = 0,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """x (B, T, D) [memory (B, S, D)] -> (out (B, T, D), weights (B, H, T, T_k) or None).

        mask: bool, True = may attend, broadcastable to (B, H, T, T_k). With a self-attention
        cache, x holds only the new positions (starting at `offset`); keys/values of earlier
        positions come from the cache. need_weights computes softmax explicitly (for pictures);
        otherwise the fused SDPA kernel runs and weights is None.
        """
        b, t, d = x.shape
        q, k, v = self._project(x, memory, cache)
        if rotary is not None:
            cos, sin = rotary
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if cache is not None and not self.cross:
            k, v = cache.append(k, v, offset)  # (B, H, offset+T, hd)
        p = self.dropout if self.training else 0.0
        weights = None
        if self.core is not None:
            y, weights = self.core(q, k, v, mask, is_causal, p, need_weights)
        elif need_weights:
            y, weights = explicit_attention(q, k, v, mask, is_causal, p)
        else:
            if _pads(t, k):
                k, v, mask, is_causal = pad_keys(k, v, mask, is_causal, t)
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=p, is_causal=is_causal
            )
        y = y.transpose(1, 2).reshape(b, t, d)  # (B, T, H*hd)
        return self.out_proj(y), weights


def _pads(t_q: int, k: Tensor) -> bool:
    """Whether attention of t_q queries over k (B, H, T_k, hd) runs faster padded (see
    KEY_BLOCK): inference on CPU, a block at least MIN_TAIL keys short, and MIN_QUERIES rows x
    heads x queries or more (below, the copy costs more than the tail: one 10-token sentence's
    4 heads took 24 us plain, 32 us padded; 8 sentences 117 us plain, 75 us padded)."""
    return (
        t_q > 1
        and k.shape[0] * k.shape[1] * t_q >= MIN_QUERIES
        and k.shape[2] % KEY_BLOCK >= MIN_TAIL
        and k.device.type == "cpu"
        and not torch.is_grad_enabled()
    )


def pad_keys(
    k: Tensor, v: Tensor, mask: Tensor | None, is_causal: bool, t_q: int
) -> tuple[Tensor, Tensor, Tensor, bool]:
    """The same attention for t_q queries with the T_k keys/values (B, H, T_k, hd) rounded up
    to a multiple of KEY_BLOCK: zeros that the returned mask (bool, or -inf in a float bias)
    hides from every query, so they weigh exactly 0. is_causal becomes the explicit lower-triangular mask
    (SDPA's top-left alignment) -> (k, v, mask, False)."""
    t_k = k.shape[2]
    extra = -t_k % KEY_BLOCK
    k = F.pad(k, (0, 0, 0, extra))
    v = F.pad(v, (0, 0, 0, extra))
    if is_causal:
        mask = torch.ones(t_q, t_k, dtype=torch.bool, device=k.device).tril()[None, None]
    elif mask is None:
        mask = torch.ones(1, 1, 1, t_k, dtype=torch.bool, device=k.device)
    mask = mask.expand(*mask.shape[:-1], t_k)
    hidden = False if mask.dtype == torch.bool else float("-inf")
    return k, v, F.pad(mask, (0, extra), value=hidden), False


def explicit_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, is_causal: bool, p: float
) -> tuple[Tensor, Tensor]:
    """softmax(q k^T / sqrt(hd)) v, written out so the weights (B, H, T_q, T_k) can be returned."""
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])  # (B, H, T_q, T_k)
    if is_causal:
        mask = subsequent_mask(q.shape[2], q.device)
    if mask is not None and mask.dtype == torch.bool:
        scores = scores.masked_fill(~mask, float("-inf"))
    elif mask is not None:  # an additive float mask (ALiBi)
        scores = scores + mask
    weights = scores.float().softmax(dim=-1).to(q.dtype)
    dropped = F.dropout(weights, p) if p > 0 else weights
    return dropped @ v, weights

"""One Transformer stack class for both roles, as in x-transformers: the encoder is
`TransformerStack(causal=False, cross_attend=False)`, the decoder `causal=True, cross_attend=True`.
Embeddings and output heads live outside, so seq2seq and MLM models share every layer class.
Attention variants arrive as core factories (one core per layer, picked by build.py) and an
optional ALiBi bias; with none of them the layers run the paper's attention unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from tfcli.model.alibi import AlibiBias
from tfcli.model.attention import MultiHeadedAttention, attention_mask
from tfcli.model.cache import KVCache, LayerKV
from tfcli.model.dropout import Dropout
from tfcli.model.feedforward import PositionwiseFeedForward
from tfcli.model.positions import RotaryPositions


class TransformerLayer(nn.Module):
    """Self-attention, optional cross-attention, feed-forward; each with residual + LayerNorm.

    post-norm (the paper): x = norm(x + dropout(sublayer(x)))
    pre-norm:              x = x + dropout(sublayer(norm(x)))   (the stack adds a final norm)
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float,
        attention_dropout: float,
        activation: str,
        pre_norm: bool,
        cross_attend: bool,
        self_core: nn.Module | None = None,
        cross_core: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.pre_norm = pre_norm
        self.self_attn = MultiHeadedAttention(d_model, n_heads, attention_dropout, core=self_core)
        self.self_attn_norm = nn.LayerNorm(d_model)
        self.cross_attn: MultiHeadedAttention | None = None
        self.cross_attn_norm: nn.LayerNorm | None = None
        if cross_attend:
            self.cross_attn = MultiHeadedAttention(
                d_model, n_heads, attention_dropout, cross=True, core=cross_core
            )
            self.cross_attn_norm = nn.LayerNorm(d_model)
        self.feed_forward = PositionwiseFeedForward(d_model, d_ff, activation)
        self.feed_forward_norm = nn.LayerNorm(d_model)
        self.dropout = Dropout(dropout)

    def _enter(self, x: Tensor, norm: nn.Module) -> Tensor:
        return norm(x) if self.pre_norm else x

    def _leave(self, x: Tensor, h: Tensor, norm: nn.Module) -> Tensor:
        x = x + self.dropout(h)
        return x if self.pre_norm else norm(x)

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None,
        is_causal: bool,
        rotary: tuple[Tensor, Tensor] | None,
        memory: Tensor | None,
        memory_mask: Tensor | None,
        cache: LayerKV | None,
        offset: int,
        need_weights: bool,
    ) -> tuple[Tensor, Tensor | None]:
        """x (B, T, D) -> (x (B, T, D), cross-attention weights (B, H, T, S) or None)."""
        h, _ = self.self_attn(
            self._enter(x, self.self_attn_norm),
            mask=mask,
            is_causal=is_causal,
            rotary=rotary,
            cache=cache,
            offset=offset,
        )
        x = self._leave(x, h, self.self_attn_norm)
        weights = None
        if self.cross_attn is not None and self.cross_attn_norm is not None:
            h, weights = self.cross_attn(
                self._enter(x, self.cross_attn_norm),
                mask=memory_mask,
                memory=memory,
                cache=cache,
                need_weights=need_weights,
            )
            x = self._leave(x, h, self.cross_attn_norm)
        h = self.feed_forward(self._enter(x, self.feed_forward_norm))
        return self._leave(x, h, self.feed_forward_norm), weights


class TransformerStack(nn.Module):
    """N TransformerLayers. Builds the self-attention mask (with ALiBi's bias) and rotary
    tables once per forward."""

    def __init__(
        self,
        n_layers: int,
        d_model: int,
        n_heads: int,
        d_ff: int,
        *,
        dropout: float,
        attention_dropout: float,
        activation: str,
        pre_norm: bool,
        causal: bool,
        cross_attend: bool,
        window: int = 0,
        rotary_positions: int = 0,
        alibi: bool = False,
        self_core: Callable[[], nn.Module] | None = None,
        cross_core: Callable[[], nn.Module] | None = None,
    ) -> None:
        """rotary_positions > 0 enables rotary q/k for that many positions (0 = no rotary);
        alibi adds ALiBi's distance bias to self-attention. self_core / cross_core make each
        layer's attention core (see MultiHeadedAttention); None = the scaled dot product."""
        super().__init__()
        self.causal = causal
        self.window = window
        self.layers = nn.ModuleList(
            TransformerLayer(
                d_model,
                n_heads,
                d_ff,
                dropout,
                attention_dropout,
                activation,
                pre_norm,
                cross_attend,
                self_core() if self_core is not None else None,
                cross_core() if cross_core is not None and cross_attend else None,
            )
            for _ in range(n_layers)
        )
        # Pre-norm leaves the residual stream unnormalised; the final norm fixes its scale.
        self.norm = nn.LayerNorm(d_model) if pre_norm else None
        self.rotary = (
            RotaryPositions(d_model // n_heads, rotary_positions) if rotary_positions else None
        )
        self.alibi = AlibiBias(n_heads) if alibi else None

    def forward(
        self,
        x: Tensor,
        pad_mask: Tensor | None = None,
        *,
        memory: Tensor | None = None,
        memory_mask: Tensor | None = None,
        cache: KVCache | None = None,
        need_weights: bool | tuple[int, ...] = False,
    ) -> Tensor | tuple[Tensor, list[Tensor]]:
        """x (B, T, D) -> (B, T, D) [, cross-attention weights: one (B, H, T, S) per layer].

        need_weights: True = every layer's weights; a tuple of layer indices (from 0) = only
        those layers' (the guided-attention loss), the others keep the fused kernel.

        pad_mask (B, 1, 1, T): True at real tokens (None = no padding; the decoder passes None:
        targets are right-padded, so under the causal mask no real token sees a pad).
        memory (B, S, D) and memory_mask (B, 1, 1, S) feed cross-attention. With a cache, x holds
        only the new positions; the cache supplies earlier keys/values and the position offset.
        """
        t = x.shape[1]
        offset = cache.length if cache is not None else 0
        mask, is_causal = attention_mask(
            pad_mask, t, offset + t, causal=self.causal, window=self.window, device=x.device
        )
        if self.alibi is not None:
            mask, is_causal = self.alibi(mask, is_causal, t, offset + t), False
        rotary = self.rotary(t, offset) if self.rotary is not None else None
        weights = []
        wanted = range(len(self.layers)) if need_weights is True else need_weights or ()
        for i, layer in enumerate(self.layers):
            layer_cache = cache.layers[i] if cache is not None else None
            x, w = layer(
                x, mask, is_causal, rotary, memory, memory_mask, layer_cache, offset, i in wanted
            )
            if w is not None:
                weights.append(w)
        if self.norm is not None:
            x = self.norm(x)
        if cache is not None:
            cache.advance(t)
        return (x, weights) if need_weights else x  # () = none wanted: plain x

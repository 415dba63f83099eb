"""Cross-attention heatmaps: which source pieces each output piece looked at.

`tfcli decode --attention FILE.png` calls `plot_translation`: it re-runs the decoder once over
the chosen hypothesis (teacher forcing, no cache) with `need_attention=True`, picks a layer and a
head (or the mean of the heads) and draws output pieces (rows) against source pieces (columns).
matplotlib is imported here only, and drawn through its object API on the Agg canvas: no
display, no global backend.

The title also says how diagonal the picture is (`diagonal_mass`: the share of each output
row's attention within 0.1 of the diagonal n/T = s/S), the reading that the guided-attention
loss (`train.guided_attention`, tfcli.training.guided) improves.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from tfcli.errors import TfcliError
from tfcli.textio import atomic_path
from tfcli.tokenizer.vocab import BOS

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from tfcli.decoding.translate import Translation


def cross_attention(model: torch.nn.Module, src: Tensor, output: list[int]) -> Tensor:
    """Cross-attention of every decoder layer while producing `output` + </s> from `src`.

    src (1, S) source ids; output: ids without <s>/</s>. Returns (L, H, T, S) float32 on the CPU,
    T = len(output) + 1: row t is the step that predicted output[t] (the last row, </s>).
    """
    with torch.inference_mode():
        was_training = model.training
        model.eval()
        try:
            memory, src_mask = model.encode(src)
            tgt_in = torch.tensor([[BOS, *output]], device=src.device)
            _, weights = model.decode(tgt_in, memory, src_mask, need_attention=True)
        finally:
            model.train(was_training)
    return torch.stack([w[0] for w in weights]).float().cpu()  # (L, H, T, S)


def check_layer_head(n_layers: int, n_heads: int, layer: int | None, head: int | None) -> None:
    """`layer` and `head` (from 1; None = the default) exist in a decoder of that shape; the
    decode command asks before decoding, so a typo costs no decoding time."""
    if layer is not None and not 1 <= layer <= n_layers:
        raise TfcliError(f"--layer {layer}: the decoder has layers 1..{n_layers}")
    if head is not None and not 1 <= head <= n_heads:
        raise TfcliError(f"--head {head}: attention has heads 1..{n_heads}")


def select(weights: Tensor, layer: int | None = None, head: int | None = None) -> Tensor:
    """(L, H, T, S) -> (T, S): `layer` and `head` count from 1; None = last layer, mean of heads."""
    n_layers, n_heads = weights.shape[:2]
    check_layer_head(n_layers, n_heads, layer, head)
    layer = n_layers if layer is None else layer
    per_layer = weights[layer - 1]  # (H, T, S)
    return per_layer.mean(0) if head is None else per_layer[head - 1]


def diagonal_mass(weights: Tensor, band: float = 0.1) -> float:
    """weights (T, S), rows distributions -> the mean over rows of the attention mass on the
    cells with |n/T - s/S| <= band (positions from 0; 1.0 = all of it near the diagonal)."""
    t, s = weights.shape
    n = torch.arange(t, dtype=torch.float32)[:, None] / t
    m = torch.arange(s, dtype=torch.float32)[None, :] / s
    near = (n - m).abs() <= band  # (T, S)
    return float((weights.float() * near).sum(-1).mean())


def plot_attention(
    weights: Tensor, src_labels: list[str], out_labels: list[str], path: Path, title: str = ""
) -> Path:
    """Draw weights (T, S) as a heatmap labelled with the pieces; write a PNG atomically."""
    from matplotlib.figure import Figure

    t, s = weights.shape
    if (t, s) != (len(out_labels), len(src_labels)):
        raise ValueError(
            f"weights {tuple(weights.shape)} vs {len(out_labels)}x{len(src_labels)} labels"
        )
    # about 0.3 inch per piece, within what a screen and matplotlib's text layout handle
    fig = Figure(figsize=(min(2.5 + 0.32 * s, 40), min(2.0 + 0.3 * t, 40)), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(
        weights.numpy(), cmap="viridis", vmin=0.0, aspect="auto", interpolation="nearest"
    )
    ax.set_xticks(range(s), labels=src_labels, rotation=90, fontsize=8)
    ax.set_yticks(range(t), labels=out_labels, fontsize=8)
    ax.set_xlabel("source pieces")
    ax.set_ylabel("output pieces")
    if title:
        ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return path


def plot_translation(
    model: torch.nn.Module,
    src_tok: Tokenizer,
    tgt_tok: Tokenizer,
    translation: Translation,
    path: Path,
    layer: int | None = None,
    head: int | None = None,
) -> Path:
    """Draw the cross-attention behind the best hypothesis of one translated line to `path`.

    Titled with the line (from 1), the layer and the head (or "mean of heads").
    """
    src_ids, out_ids = translation.src_ids, translation.hypotheses[0].tokens
    device = next(model.parameters()).device
    weights = cross_attention(model, torch.tensor([src_ids], device=device), out_ids)
    src_labels = [src_tok.id_to_token(i) for i in src_ids[:-1]] + ["</s>"]
    out_labels = [tgt_tok.id_to_token(i) for i in out_ids] + ["</s>"]
    shown = f"head {head}" if head else "mean of heads"
    picked = select(weights, layer, head)
    title = (
        f"cross-attention, line {translation.index + 1}, layer {layer or weights.shape[0]}, "
        f"{shown}; {diagonal_mass(picked):.0%} of it within 0.1 of the diagonal"
    )
    return plot_attention(picked, src_labels, out_labels, path, title)

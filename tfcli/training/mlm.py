"""The masked-LM objective for the shared training loop (tfcli.training.loop).

setup.pretrain_mlm assembles the run around it (data, MaskedLM, loop); this module holds only
the objective: its examples, batches, masks, loss and validation.

Examples come from an encoded monolingual split (`tfcli.data.split.TextData`), framed as sentences
`[BOS] ids [EOS]`, in one of two packings (recipe `mlm.packing`):

* blocks: the sentences are laid end to end in one stream and cut into blocks of
  `mlm.block_size` tokens, across sentence boundaries (RoBERTa's FULL-SENTENCES); only the last
  block is padded. No token is wasted on padding, and the `<s>`/`</s>` framing tells the model
  where sentences start and end, exactly as a single sentence looks at fill-mask time.
* sentences: one sentence per example, truncated to `block_size`, batched with sentences of
  similar length so padding stays small.

The loop sees cheap descriptors (`MLMBatch`: epoch, index, example ids); `collate` turns one into
tensors and draws its mask from a generator seeded by (seed, epoch, index), so masks are
dynamic (new each epoch) yet reproduced exactly by `--resume`, whatever the number of ranks.
Validation uses one fixed mask per batch (`masking.valid_generator`), drawn once and cached,
so its numbers are comparable across evaluations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from tfcli.errors import DataError
from tfcli.recipe.schema import Packing
from tfcli.tokenizer.vocab import BOS, EOS, PAD
from tfcli.training.masking import IGNORE_INDEX, batch_generator, mask_tokens, valid_generator

if TYPE_CHECKING:
    from tfcli.data.split import TextData
    from tfcli.recipe.schema import MLMConfig

_SORT_WINDOW = 100  # sentences packing: sort by length within windows of this many batches


@dataclass(frozen=True)
class MLMBatch:
    """What the loop holds for one batch: its epoch, its index in the epoch's global order (which
    seeds its mask, so masks do not depend on the number of ranks) and its example ids."""

    epoch: int
    index: int
    rows: np.ndarray  # (B,) int64: block numbers (blocks) or sentence indices (sentences)


class Examples:
    """MLM examples of one encoded split: (B, T) int64 id arrays for given example numbers."""

    def __init__(self, data: TextData, packing: Packing, block_size: int, where: str) -> None:
        if block_size < 3:
            raise DataError(f"mlm.block_size must be at least 3 (<s> token </s>), got {block_size}")
        self.packing = packing
        self.block_size = block_size
        text = data.text
        self.ids, self.offsets, self.lengths = text.ids, np.asarray(text.offsets), text.lengths
        if int(self.lengths.sum()) == 0:
            raise DataError(
                f"{where}: the encoded split holds no tokens; check data.text / data.valid_text"
            )
        if packing is Packing.BLOCKS:
            # Sentence i starts at stream position offsets[i] + 2i (one <s> and one </s> each).
            self.stream_starts = self.offsets + 2 * np.arange(len(self.offsets), dtype=np.int64)
            self.stream_len = int(self.stream_starts[-1])
            self.count = math.ceil(self.stream_len / block_size)
            self.cost = None
        else:
            self.rows = np.flatnonzero(self.lengths > 0)  # an empty line has nothing to predict
            self.count = len(self.rows)
            self.cost = np.minimum(self.lengths[self.rows] + 2, block_size)

    def __len__(self) -> int:
        return self.count

    def build(self, rows: np.ndarray) -> np.ndarray:
        """(B, T) int64 ids for example numbers `rows`, PAD on the right."""
        if self.packing is Packing.BLOCKS:
            return self._blocks(rows)
        return self._sentences(rows)

    def _blocks(self, blocks: np.ndarray) -> np.ndarray:
        pos = blocks[:, None] * self.block_size + np.arange(self.block_size)  # (B, T) stream pos
        inside = pos < self.stream_len
        pos = np.minimum(pos, self.stream_len - 1)
        sent = np.searchsorted(self.stream_starts, pos, side="right") - 1  # (B, T) sentence
        k = pos - self.stream_starts[sent]  # 0 = <s>, 1..len = ids, len + 1 = </s>
        n = self.lengths[sent]
        body = (k >= 1) & (k <= n)
        flat = np.where(body, self.offsets[sent] + k - 1, 0)
        out = np.where(body, self.ids[flat.reshape(-1)].reshape(flat.shape), EOS).astype(np.int64)
        out[k == 0] = BOS
        out[~inside] = PAD
        return out

    def _sentences(self, rows: np.ndarray) -> np.ndarray:
        sents = self.rows[rows]
        width = int(self.cost[rows].max())
        out = np.full((len(rows), width), PAD, dtype=np.int64)
        for b, i in enumerate(sents):
            body = self.ids[self.offsets[i] : self.offsets[i + 1]][: self.block_size - 2]
            out[b, 0] = BOS
            out[b, 1 : 1 + len(body)] = body
            out[b, 1 + len(body)] = EOS
        return out

    def batches(self, batch_size: int, rng: np.random.Generator | None) -> list[np.ndarray]:
        """Example numbers per batch; shuffled by `rng`, in order when it is None (validation)."""
        order = np.arange(self.count) if rng is None else rng.permutation(self.count)
        if self.cost is not None:
            # Similar lengths together, within windows, so shuffling still mixes the corpus.
            window = batch_size * _SORT_WINDOW
            for s in range(0, len(order), window):
                chunk = order[s : s + window]
                order[s : s + window] = chunk[np.argsort(self.cost[chunk], kind="stable")]
        out = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
        if rng is not None and self.cost is not None:
            out = [out[j] for j in rng.permutation(len(out))]
        return out


class MLMObjective:
    """Masked-LM loss over the selected positions; validation loss, perplexity and accuracy."""

    kind = "mlm"
    primary_metric = "loss"
    higher_is_better = False
    budget_knob = "mlm.batch_size"

    def __init__(
        self,
        train: TextData,
        valid: TextData | None,
        cfg: MLMConfig,
        *,
        vocab_size: int,
        seed: int,
        word_starts: torch.Tensor | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        """`word_starts` (V,) bool from masking.word_start_table, needed when cfg.whole_word."""
        self.cfg = cfg
        self.vocab_size = vocab_size
        self.seed = seed
        self.word_starts = word_starts
        self.label_smoothing = label_smoothing
        self.train = Examples(train, cfg.packing, cfg.block_size, "train split")
        self.valid = Examples(valid, cfg.packing, cfg.block_size, "valid split") if valid else None
        self._valid_cache: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    def train_batches(self, epoch: int, rank: int, world: int) -> list[MLMBatch]:
        """This rank's batches of `epoch`: a pure function of (seed, epoch, rank, world).

        Every rank gets the same count: the list wraps around to its start when the number of
        batches is not a multiple of `world` (as torch's DistributedSampler does).
        """
        rng = np.random.default_rng([self.seed, epoch, 2])
        batches = [
            MLMBatch(epoch, i, rows)
            for i, rows in enumerate(self.train.batches(self.cfg.batch_size, rng))
        ]
        if world > 1 and batches:
            batches += [batches[j % len(batches)] for j in range(-len(batches) % world)]
            batches = batches[rank::world]
        return batches

    def _mask(self, ids: np.ndarray, generator: torch.Generator) -> dict[str, Any]:
        tokens = torch.from_numpy(ids)
        inputs, labels = mask_tokens(tokens, self.cfg, self.vocab_size, generator, self.word_starts)
        return {"input": inputs, "labels": labels}

    def collate(self, batch: MLMBatch) -> dict[str, Any]:
        """{"input": (B, T) masked ids, "labels": (B, T) original ids or -100}, CPU tensors."""
        ids = self.train.build(batch.rows)
        return self._mask(ids, batch_generator(self.seed, batch.epoch, batch.index))

    def loss(self, model: torch.nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict]:
        """Summed cross-entropy over the selected positions; stats for the loop's normaliser.

        Only the N selected positions go through the output head (MaskedLM's `select`): the
        (N, V) logits are ~15% of the dense (B, T, V) ones.
        """
        inputs, labels = batch["input"], batch["labels"]
        select = labels != IGNORE_INDEX  # (B, T)
        target = labels[select]  # (N,)
        logits = model(inputs, select=select).float()  # (N, V)
        loss = F.cross_entropy(
            logits, target, reduction="sum", label_smoothing=self.label_smoothing
        )
        nll = loss
        if self.label_smoothing:
            nll = F.cross_entropy(logits.detach(), target, reduction="sum")
        stats = {"tokens": select.sum(), "nll": nll.detach(), "throughput": (inputs != PAD).sum()}
        return loss, stats

    def valid_batches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The validation set, masked once with a fixed seed (cached: the same at every eval)."""
        if self._valid_cache is None:
            assert self.valid is not None
            self._valid_cache = []
            for i, rows in enumerate(self.valid.batches(self.cfg.batch_size, None)):
                b = self._mask(self.valid.build(rows), valid_generator(self.seed, i))
                self._valid_cache.append((b["input"], b["labels"]))
        return self._valid_cache

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        """{"loss": mean NLL per masked token, "ppl": exp(loss), "accuracy": top-1 on masked
        tokens, "masked_tokens": count}; empty when there is no validation split."""
        if self.valid is None:
            return {}
        device = next(model.parameters()).device
        nll, correct, count = 0.0, 0, 0
        for inputs, labels in self.valid_batches():
            inputs, labels = inputs.to(device), labels.to(device)
            select = labels != IGNORE_INDEX
            target = labels[select]
            logits = model(inputs, select=select).float()  # (N, V)
            nll += F.cross_entropy(logits, target, reduction="sum").item()
            correct += int((logits.argmax(-1) == target).sum())
            count += int(target.numel())
        loss = nll / max(count, 1)
        return {
            "loss": loss,
            "ppl": math.exp(min(loss, 50.0)),  # capped: a diverged model must not overflow
            "accuracy": correct / max(count, 1),
            "masked_tokens": float(count),
        }

"""Training and validation metrics, accumulated on the device as sums and reduced across ranks
once: :class:`RunningSums` (the epoch's training losses) and :class:`EvalMetrics`:

* Semantic top-1 per softmax level: argmax inside the level's classes vs the level target, over
  samples that have a label at that level. Totals: the released metric (correct over all valid
  (sample, level) pairs) and the paper's C.3 total (per-level accuracies weighted by the number
  of classes in each level).
* Single-label top-1 / top-5: argmax over all logits vs the class label.
* Multi-label mAP against multi-hot targets (class + ancestors): macro (mean AP over classes
  with a positive) and micro (pooled pairs). To stay exact across ranks and small in memory at
  11k classes, scores are binned - 200 bins uniform in logit(p) over [-10, 10] - and AP is
  computed from per-class positive/negative histograms, i.e. exact AP of the binned scores.
  Scores ``p``: sigmoid for the multi-label scheme, the level softmax for the semantic scheme
  (0 for classes in no softmax level), the full softmax for the single-label scheme.

All counts are sums, so reducing them with one all-reduce gives the metrics of the whole
validation split however it was sharded.
"""
from __future__ import annotations

import torch

from trainer.distributed import all_reduce_sum
from trainer.levels import LevelLayout

LOGIT_RANGE = 10.0
NUM_BINS = 200


class RunningSums:
    """Per-rank sums of the training losses of the current epoch (device tensors, no syncs)."""

    def __init__(self, num_levels: int, device: torch.device):
        self.values = torch.zeros(2 + 2 * num_levels, dtype=torch.float64, device=device)
        self.num_levels = num_levels

    def add(self, loss, level_losses=None, confidence=None) -> None:
        L = self.num_levels
        self.values[0] += loss.detach().double()
        self.values[1] += 1
        if level_losses is not None:
            self.values[2:2 + L] += level_losses.double()
        if confidence is not None:
            self.values[2 + L:] += confidence.double()

    def reduced(self) -> dict:
        """Means over all ranks' micro-batches (a collective: call on every rank)."""
        total = all_reduce_sum(self.values.clone()).cpu()
        count, L = max(float(total[1]), 1.0), self.num_levels
        return {"loss": round(float(total[0]) / count, 6),
                "level_loss": [round(float(x) / count, 6) for x in total[2:2 + L]],
                "teacher_confidence": [round(float(x) / count, 6) for x in total[2 + L:]]}

    def mean_loss(self) -> float:
        return float(self.values[0] / self.values[1].clamp(min=1))


def _number(value) -> float | None:
    """A JSON-friendly percentage: rounded to 4 decimals, None for NaN (nothing to measure)."""
    value = float(value)
    return None if value != value else round(value, 4)


def class_probabilities(logits: torch.Tensor, layout: LevelLayout, scheme: str) -> torch.Tensor:
    """``[B, C]`` float32 per-class scores in ``[0, 1]`` as the scheme's head defines them."""
    logits = logits.float()
    if scheme == "multi":
        return torch.sigmoid(logits)
    if scheme == "single":
        return torch.softmax(logits, dim=1)
    ordered = layout.level_ordered(logits)
    probs = torch.cat([torch.softmax(ordered[:, s], dim=1) for s in layout.level_slices()]
                      + [ordered.new_zeros(ordered.shape[0], 1)], dim=1)
    return probs.index_select(1, layout.inverse)


def binned_average_precision(positives: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """AP per row from score histograms ``[..., bins]`` (higher bin = higher score).

    Bins are thresholds ranked from the top: ``AP = sum_k P(k) * pos_k / sum(pos)`` with the
    precision ``P(k)`` of everything at or above bin ``k``. NaN for rows without positives.
    """
    pos = positives.flip(-1).double()
    neg = negatives.flip(-1).double()
    tp, fp = pos.cumsum(-1), neg.cumsum(-1)
    precision = tp / (tp + fp).clamp(min=1)
    total = pos.sum(-1)
    return (precision * pos).sum(-1) / total.where(total > 0, torch.full_like(total, float("nan")))


class EvalMetrics:
    """Accumulates validation metrics for one model over any number of batches / ranks."""

    def __init__(self, layout: LevelLayout, scheme: str, device: torch.device):
        self.layout, self.scheme = layout.to(device), scheme
        levels, classes = layout.num_levels, layout.num_classes
        self.level_correct = torch.zeros(levels, dtype=torch.int64, device=device)
        self.level_valid = torch.zeros(levels, dtype=torch.int64, device=device)
        self.topk_counts = torch.zeros(3, dtype=torch.int64, device=device)  # top1, top5, n
        self.histogram = torch.zeros(2, classes * NUM_BINS, dtype=torch.int64, device=device)

    @torch.no_grad()
    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        layout = self.layout
        logits = logits.float()
        ordered = layout.level_ordered(logits)
        targets = layout.semantic_targets(labels)
        valid = targets >= 0
        predictions = torch.stack([ordered[:, s].argmax(dim=1) for s in layout.level_slices()], 1)
        self.level_correct += ((predictions == targets) & valid).sum(dim=0)
        self.level_valid += valid.sum(dim=0)

        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hits = top == labels.unsqueeze(1)
        self.topk_counts += torch.stack([hits[:, 0].sum(), hits.any(dim=1).sum(),
                                         torch.tensor(labels.shape[0], device=labels.device)])

        probs = class_probabilities(logits, layout, self.scheme).clamp(1e-12, 1 - 1e-7)
        score = (torch.log(probs) - torch.log1p(-probs)).clamp(-LOGIT_RANGE, LOGIT_RANGE)
        bins = ((score + LOGIT_RANGE) * (NUM_BINS / (2 * LOGIT_RANGE))).long().clamp(max=NUM_BINS - 1)
        flat = bins + torch.arange(layout.num_classes, device=bins.device) * NUM_BINS
        hot = layout.multi_hot(labels).bool()
        size = layout.num_classes * NUM_BINS
        self.histogram[0] += torch.bincount(flat[hot], minlength=size)
        self.histogram[1] += torch.bincount(flat[~hot], minlength=size)

    def reduce(self) -> None:
        """Sum the accumulators over all ranks (call once, on every rank)."""
        for tensor in (self.level_correct, self.level_valid, self.topk_counts, self.histogram):
            all_reduce_sum(tensor)

    def compute(self) -> dict:
        """The metrics as plain floats (percentages) and lists, for logs and plots."""
        correct = self.level_correct.double().cpu()
        valid = self.level_valid.double().cpu()
        per_level = torch.where(valid > 0, 100 * correct / valid.clamp(min=1),
                                torch.full_like(valid, float("nan")))
        sizes = torch.tensor(self.layout.level_sizes, dtype=torch.float64)
        has = valid > 0
        weighted = (per_level[has] * sizes[has]).sum() / sizes[has].sum() if has.any() else torch.nan
        top1, top5, count = self.topk_counts.tolist()
        hist = self.histogram.view(2, self.layout.num_classes, NUM_BINS).cpu()
        per_class = binned_average_precision(hist[0], hist[1])
        micro = binned_average_precision(hist[0].sum(0), hist[1].sum(0))
        return {
            "samples": int(count),
            "semantic_top1_per_level": [_number(x) for x in per_level],
            "semantic_top1": _number(100 * correct.sum() / valid.sum().clamp(min=1)),
            "semantic_top1_class_weighted": _number(weighted),
            "top1": _number(100.0 * top1 / max(count, 1)),
            "top5": _number(100.0 * top5 / max(count, 1)),
            "map_macro": _number(100 * per_class.nanmean()),
            "map_micro": _number(100 * micro),
        }

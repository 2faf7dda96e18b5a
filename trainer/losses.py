"""Training losses of the three pretraining schemes and semantic knowledge distillation.

Every loss is a mean over the (local) batch, so DistributedDataParallel's gradient averaging
over equally sized rank batches yields the gradient of the global-batch loss.

* :class:`SemanticSoftmaxLoss` - paper 3.3: one label-smoothed softmax per hierarchy level,
  levels without a label masked, levels weighted by the tree's normalization factors. Numerically
  the released ``SemanticSoftmaxLoss``; computed by one autograd function over level-ordered
  logits (one ``exp`` per logit, one ``[B, C]`` buffer that the backward turns into the
  gradient) instead of per-level masked one-hot products. Takes class-ordered logits or, as the
  trainer does, the logits of a head whose rows are in level order (no reordering).
* :class:`SingleLabelLoss` - paper 3.1: softmax cross-entropy over all classes, label smoothing.
* :class:`AsymmetricMultiLabelLoss` - paper 3.2 / B.2: sigmoid per class over class + ancestors
  with the asymmetric loss (ASL).
* :class:`SemanticKDLoss` - paper 3.3.3 / appendix F: per-level MSE between teacher and student
  probabilities weighted by the teacher confidence.

The losses of the tree take its :class:`~trainer.levels.LevelLayout` (``layout``; a
``hierarchy.SemanticTree`` given in its place is laid out first).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from trainer.levels import LevelLayout, multi_hot


def _as_layout(layout) -> LevelLayout:
    """``layout`` itself, or the :class:`LevelLayout` of a ``hierarchy.SemanticTree`` given in its place."""
    return layout if isinstance(layout, LevelLayout) else LevelLayout.from_tree(layout)


LOGITS_ORDERS = ("class", "level")
LOG2_E = 1.0 / math.log(2.0)


def _level_blocks(tensor: torch.Tensor, sizes: tuple[int, ...]) -> tuple[torch.Tensor, ...]:
    """Views of each level's columns of a level-ordered ``[B, C]`` tensor."""
    return tensor.split(sizes + (tensor.shape[1] - sum(sizes),), dim=1)[:-1]


def _per_level(reduce, tensor: torch.Tensor, sizes: tuple[int, ...]) -> torch.Tensor:
    """``[B, L]``: ``reduce`` (a ``[B, n] -> [B, 1]`` function) of each level's block."""
    return torch.cat([reduce(block) for block in _level_blocks(tensor, sizes)], dim=1)


def _row_sums(block: torch.Tensor) -> torch.Tensor:
    return block.sum(dim=1, keepdim=True)


def _level_exps(logits: torch.Tensor, sizes: tuple[int, ...]):
    """Each level's exps of level-ordered ``logits`` (levels of ``sizes`` columns, in order) in
    one float32 (or float64) buffer shaped like ``logits`` whose columns after the last level
    are 0, with each level's sum of exps, log-sum-exp and mean logit as ``[B, L]``.

    On the CPU the exps are taken unshifted, ``exp2(z * log2(e))`` (a multiply, then ``exp2_``:
    Sleef's ``exp2``; ``torch.exp`` calls MKL's, several times slower on some CPUs -
    ``benchmarks/semantic_loss.py`` times the loss on the machine at hand), and kept
    when every level's sum lies in ``[sqrt(tiny), inf)`` of the dtype (float32 keeps its full
    precision there; it holds for logits between about -43 and 80). That check reads a flag on
    the host: free on the CPU, a synchronisation on a GPU. Otherwise, and on GPUs, each level is
    shifted by its max: ``exp2((z - max) * log2(e))`` (one fused add, then ``exp2_``)."""
    dtype = torch.promote_types(logits.dtype, torch.float32)  # half precision -> float32
    means = _per_level(lambda block: block.mean(dim=1, keepdim=True, dtype=dtype), logits, sizes)
    width = sum(sizes)  # the columns in a softmax level
    exps = torch.empty(logits.shape, dtype=dtype, device=logits.device)
    exps[:, width:] = 0.0
    if logits.device.type == "cpu":
        torch.mul(logits[:, :width].to(dtype), LOG2_E, out=exps[:, :width]).exp2_()
        sums = _per_level(_row_sums, exps, sizes)
        if bool(((sums >= torch.finfo(dtype).tiny ** 0.5) & (sums < math.inf)).all()):
            return exps, sums, sums.log(), means
    peaks = _per_level(lambda block: block.amax(dim=1, keepdim=True), logits, sizes).to(dtype)
    shifts = (peaks * -LOG2_E).split(1, dim=1)
    blocks, exp_blocks = _level_blocks(logits, sizes), _level_blocks(exps, sizes)
    for block, exp_block, shift in zip(blocks, exp_blocks, shifts):
        torch.add(shift, block, alpha=LOG2_E, out=exp_block).exp2_()
    sums = _per_level(_row_sums, exps, sizes)
    return exps, sums, peaks + sums.log(), means


class _SemanticCrossEntropy(torch.autograd.Function):
    """Per-level label-smoothed cross-entropy of level-ordered logits, hand-written backward.

    Forward, per level ``i`` (block ``z`` of ``n_i`` columns): with a shift ``m`` (0, or
    ``max(z)`` where that is needed; see :func:`_level_exps`), ``s = sum(exp(z - m))`` and
    ``lse = m + log(s)``, ``CE = (1 - ls) * (lse - z[target]) + ls * (lse - mean(z))``
    (= ``-sum(t * log_softmax(z))`` for the smoothed one-hot ``t``). Returns the
    ``[num_levels]`` level losses, each summed over the valid samples and divided by the batch
    size. Backward: ``(exp(z - m) / s - ls / n_i) * c - (1 - ls) * c * one_hot`` with
    ``c = valid * g_i / B``, computed in place in the forward's buffer of exps, which becomes the
    gradient (no second ``exp``, no new ``[B, C]`` tensor); a second backward through a retained
    graph recomputes the exps.
    """

    @staticmethod
    def forward(ctx, logits, labels, target_table, level_starts, level_widths, sizes, smoothing):
        targets = target_table.index_select(0, labels)
        valid = targets >= 0
        columns = targets.clamp(min=0) + level_starts
        exps, sums, lse, means = _level_exps(logits, sizes)
        picked = logits.gather(1, columns).to(exps.dtype)
        ce = (1.0 - smoothing) * (lse - picked) + smoothing * (lse - means)
        ctx.save_for_backward(logits, columns, valid, sums, level_widths)
        ctx.exps, ctx.sizes, ctx.smoothing = exps, sizes, smoothing
        return (ce * valid).sum(dim=0) / logits.shape[0]

    @staticmethod
    def backward(ctx, grad_levels):
        logits, columns, valid, sums, level_widths = ctx.saved_tensors
        grad, ctx.exps = ctx.exps, None  # the buffer is consumed: the next backward recomputes
        if grad is None:
            grad = _level_exps(logits, ctx.sizes)[0]
        sizes, smoothing = ctx.sizes, ctx.smoothing
        coef = valid * (grad_levels.unsqueeze(0) / valid.shape[0])  # [B, L]
        scale = coef / sums  # softmax = exp / s
        bias = coef * (smoothing / level_widths.to(coef.dtype))
        for i, block in enumerate(_level_blocks(grad, sizes)):
            block.mul_(scale[:, i : i + 1]).sub_(bias[:, i : i + 1])
        grad.scatter_add_(1, columns, coef * -(1.0 - smoothing))
        return (grad.to(logits.dtype),) + (None,) * 6


def _check_logits_order(logits_order: str) -> str:
    if logits_order not in LOGITS_ORDERS:
        raise ValueError(f"logits_order must be one of {LOGITS_ORDERS}, not {logits_order!r}")
    return logits_order


class SemanticSoftmaxLoss(nn.Module):
    """Semantic softmax loss (paper 3.3.1-3.3.2), called as ``loss(logits, labels)``.

    ``labels`` are class indices ``[B]``; the per-level targets are gathered on the logits'
    device from the tree's target table. For softmax level ``i`` with ``n_i`` classes::

        t_i = one_hot(target_i) * (1 - ls) + ls / n_i
        L_i = sum_b [target_i(b) >= 0] * CE(t_i, log_softmax(logits_b over level i)) / B
        L   = sum_i w_i * L_i              (w_i = tree.normalization_factors[i])

    ``logits_order="class"`` (default): ``logits[:, c]`` is class ``c``. ``"level"``: the logits
    of a level-ordered head, ``logits[:, r]`` is class ``LevelLayout.head_order[r]`` - the
    trainer's semantic runs use it, which saves reordering ``[B, C]`` logits twice per step.
    ``last_level_losses`` holds the unweighted ``L_i`` of the latest call (detached), for logs.
    """

    def __init__(self, layout: LevelLayout, label_smoothing: float = 0.2, logits_order: str = "class"):
        super().__init__()
        layout = _as_layout(layout)
        self.label_smoothing = float(label_smoothing)
        self.logits_order = _check_logits_order(logits_order)
        self.register_buffer("head_order", layout.head_order.clone(), persistent=False)
        self.register_buffer("level_starts", torch.tensor(layout.offsets[:-1]), persistent=False)
        self.register_buffer("target_table", layout.target_table.clone(), persistent=False)
        self.register_buffer("weights", layout.weights.clone(), persistent=False)
        self.sizes = tuple(layout.level_sizes)
        self.register_buffer("level_widths", torch.tensor(self.sizes, dtype=torch.float64), persistent=False)
        self.last_level_losses: torch.Tensor | None = None

    def level_losses(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Unweighted per-level losses ``[num_levels]`` (float32, differentiable)."""
        if self.logits_order == "class":
            logits = logits.index_select(1, self.head_order)
        return _SemanticCrossEntropy.apply(logits, labels, self.target_table, self.level_starts,
                                           self.level_widths, self.sizes, self.label_smoothing)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        losses = self.level_losses(logits, labels)
        self.last_level_losses = losses.detach()
        return (losses * self.weights).sum()


class SingleLabelLoss(nn.Module):
    """Softmax cross-entropy over all classes with label smoothing (paper 3.1: 0.2)."""

    def __init__(self, label_smoothing: float = 0.2):
        super().__init__()
        self.label_smoothing = float(label_smoothing)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing)


class AsymmetricMultiLabelLoss(nn.Module):
    """ASL (Ridnik et al. 2021) over multi-hot targets: the class and all its ancestors.

    With ``p = sigmoid(z)``, ``p_m = max(p - clip, 0)`` (probability shifting of negatives)::

        L+ = (1 - p)^gamma_pos * log(p)          L- = p_m^gamma_neg * log(1 - p_m)
        L  = -sum_classes (y * L+ + (1 - y) * L-), averaged over the batch

    The released ASL sums over the batch as well; the batch mean only rescales it and keeps the
    loss independent of how a global batch is split across ranks. The focusing weights are
    treated as constants in the backward pass, as in the released ``AsymmetricLossOptimized``
    with ``disable_torch_grad_focal_loss``.
    """

    def __init__(self, layout: LevelLayout, gamma_neg: float = 4.0, gamma_pos: float = 0.0, clip: float = 0.05,
                 eps: float = 1e-8):
        super().__init__()
        layout = _as_layout(layout)
        self.num_classes = layout.num_classes
        self.gamma_neg, self.gamma_pos, self.clip, self.eps = gamma_neg, gamma_pos, clip, eps
        self.register_buffer("chain_table", layout.chain_table.clone(), persistent=False)

    def targets(self, labels: torch.Tensor) -> torch.Tensor:
        """``[B, C]`` multi-hot float targets (class + ancestors), built on device."""
        return multi_hot(self.chain_table, labels, self.num_classes)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        y = self.targets(labels)
        p = torch.sigmoid(logits.float())
        p_neg = (1.0 - p + self.clip).clamp(max=1.0) if self.clip > 0 else 1.0 - p
        loss = y * torch.log(p.clamp(min=self.eps)) + (1 - y) * torch.log(p_neg.clamp(min=self.eps))
        with torch.no_grad():
            pt = p * y + p_neg * (1 - y)
            gamma = self.gamma_pos * y + self.gamma_neg * (1 - y)
            focus = torch.pow(1.0 - pt, gamma)
        return -(loss * focus).sum() / logits.shape[0]


def teacher_confidence(teacher_probs: list[torch.Tensor], valid: torch.Tensor,
                       top_fraction: float = 0.05) -> torch.Tensor:
    """Appendix F: ``[B, num_levels]`` confidence ``P_i`` of the teacher at each level.

    ``P_i = 1`` where the ground truth has a label at level ``i`` (``valid[:, i]``); elsewhere the
    sum of the teacher's top ``ceil(top_fraction * n_i)`` probabilities at that level (at least
    one class).
    """
    confidence = []
    for i, probs in enumerate(teacher_probs):
        k = max(1, math.ceil(top_fraction * probs.shape[1]))
        top = probs.topk(k, dim=1).values.sum(dim=1)
        confidence.append(torch.where(valid[:, i], torch.ones_like(top), top))
    return torch.stack(confidence, dim=1)


class SemanticKDLoss(nn.Module):
    """Semantic knowledge distillation (paper eq. 5-7, appendix F).

    Per softmax level ``i``, with teacher and student level softmaxes ``T_i``, ``S_i`` and the
    teacher confidence ``P_i`` (:func:`teacher_confidence`)::

        L_KD = sum_i (1 / B) * sum_b P_i(b) * sum_c (S_i(b, c) - T_i(b, c))^2

    i.e. the squared error is summed over a level's classes (a per-element mean would shrink
    with the level's size and vanish at 11k classes), averaged over the batch, and the levels are
    summed unweighted as in eq. 7. The trainer adds ``kd_weight * L_KD`` to the semantic loss.
    ``logits_order`` (both models' logits) as in :class:`SemanticSoftmaxLoss`.
    ``last_confidence`` keeps the batch-mean ``P_i`` per level (detached) for paper Fig. 7.
    """

    def __init__(self, layout: LevelLayout, top_fraction: float = 0.05, logits_order: str = "class"):
        super().__init__()
        layout = _as_layout(layout)
        self.slices = layout.level_slices()
        self.top_fraction = float(top_fraction)
        self.logits_order = _check_logits_order(logits_order)
        self.register_buffer("order", layout.order.clone(), persistent=False)
        self.register_buffer("target_table", layout.target_table.clone(), persistent=False)
        self.last_confidence: torch.Tensor | None = None

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                labels: torch.Tensor) -> torch.Tensor:
        slices = self.slices
        reorder = self.logits_order == "class"
        student = (student_logits.index_select(1, self.order) if reorder
                   else student_logits).float()
        with torch.no_grad():
            teacher = (teacher_logits.index_select(1, self.order) if reorder
                       else teacher_logits).float()
            teacher_probs = [torch.softmax(teacher[:, s], dim=1) for s in slices]
            valid = self.target_table.index_select(0, labels) >= 0
            confidence = teacher_confidence(teacher_probs, valid, self.top_fraction)
        total = student.new_zeros(())
        for i, s in enumerate(slices):
            squared = (torch.softmax(student[:, s], dim=1) - teacher_probs[i]).square().sum(dim=1)
            total = total + (confidence[:, i] * squared).mean()
        self.last_confidence = confidence.mean(dim=0)
        return total


def make_criterion(config, layout: LevelLayout) -> nn.Module:
    """The loss of ``config.scheme``: semantic softmax on the trainer's level-ordered head,
    label-smoothed single-label cross-entropy, or multi-label ASL."""
    if config.scheme == "semantic":
        return SemanticSoftmaxLoss(layout, label_smoothing=config.label_smoothing, logits_order="level")
    if config.scheme == "single":
        return SingleLabelLoss(config.label_smoothing)
    return AsymmetricMultiLabelLoss(layout, gamma_neg=config.asl_gamma_neg, gamma_pos=config.asl_gamma_pos,
                                    clip=config.asl_clip)

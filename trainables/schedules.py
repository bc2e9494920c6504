"""Learning-rate schedules and optimizers in plain PyTorch, for the knobs ``trainables/hyperparameters/optim.py``
declares (``lr_schedule`` with its own knobs, ``optimizer: adamw | sgd`` with its own).

The schedule is one function of the step (``lr_factor``), applied per batch through ``torch.optim``'s
``LambdaLR``: epochs are counted in batches, so a schedule is smooth however long an epoch is.
"""

from __future__ import annotations

import math

import torch

from trainables.fused import FusedAdamW, FusedSGD
from trainables.hyperparameters.optim import LrScheduleParams, OptimizerParams


def make_optimizer(params, p: OptimizerParams, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if p.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=p.momentum, weight_decay=weight_decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=(p.beta1, p.beta2))


def fused_optimizer(params, ps: list[OptimizerParams]):
    """A fused group's optimizer (its members share ``optimizer``; each has its own lr, decay, momentum, betas)."""
    if ps[0].optimizer == "sgd":
        return FusedSGD(params, [p.lr for p in ps], [p.momentum for p in ps], [p.weight_decay for p in ps])
    return FusedAdamW(params, [p.lr for p in ps], [p.weight_decay for p in ps], [(p.beta1, p.beta2) for p in ps])


def lr_factor(p: LrScheduleParams, lr: float, step: int, steps_per_epoch: int, epochs: int) -> float:
    """The learning rate at optimizer step ``step`` (0, 1, ...) as a multiple of ``lr``."""
    total = max(epochs * steps_per_epoch, 1)
    if p.lr_schedule == "step":
        return p.gamma ** (step // (p.step_size * steps_per_epoch))
    if p.lr_schedule == "cosine":
        warm = p.warmup_epochs * steps_per_epoch
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(step - warm, total - warm) / max(total - warm, 1)))
    if p.lr_schedule == "onecycle":  # torch's OneCycleLR (cosine): up from peak/25 for 30%, down to peak/25e4
        peak = (p.max_lr or lr) / lr
        up = 0.3 * total
        if step < up:
            return peak / 25 + (peak - peak / 25) * (1 - math.cos(math.pi * step / up)) / 2
        t = min((step - up) / max(total - up, 1), 1.0)
        return peak / 25e4 + (peak - peak / 25e4) * (1 + math.cos(math.pi * t)) / 2
    return 1.0


def scheduler(
    opt: torch.optim.Optimizer, p: LrScheduleParams, lr: float, steps_per_epoch: int, epochs: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Step it after each optimizer step."""
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(p, lr, step, steps_per_epoch, epochs))

"""Learning-rate schedules and the optimizer choice a trainable's hyperparameters may take, in plain PyTorch.

``LrScheduleParams`` adds ``lr_schedule: none | step | cosine | onecycle`` with each schedule's own knobs
(``step_size`` and ``gamma``; ``warmup_epochs``; ``max_lr``), and ``OptimizerParams`` adds ``optimizer:
adamw | sgd`` with SGD's ``momentum`` and AdamW's betas. A knob given for a schedule or optimizer that does
not take it is refused (``gamma`` under ``cosine``), as an architecture option is for a model that does
not take it: in a space file such knobs are conditional (``when: {lr_schedule: step}``).

The schedule is one function of the step (``lr_factor``), applied per batch through ``torch.optim``'s
``LambdaLR``: epochs are counted in batches, so a schedule is smooth however long an epoch is.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import BaseModel, Field, model_validator

from trainables.fused import FusedAdamW, FusedSGD

SCHEDULE_KNOBS = {"step": ("step_size", "gamma"), "cosine": ("warmup_epochs",), "onecycle": ("max_lr",)}
OPTIMIZER_KNOBS = {"sgd": ("momentum",), "adamw": ("beta1", "beta2")}


def _check_knobs(p: BaseModel, choice_field: str, knobs: dict[str, tuple[str, ...]]) -> None:
    choice = getattr(p, choice_field)
    for other, names in knobs.items():
        for name in names:
            if other != choice and name in p.model_fields_set:
                raise ValueError(f"{name} applies to {choice_field}: {other} only (this one is {choice})")


class LrScheduleParams(BaseModel):
    lr_schedule: Literal["none", "step", "cosine", "onecycle"] = "none"
    step_size: int = Field(1, ge=1, description="step: epochs between decays")
    gamma: float = Field(0.1, gt=0, le=1, description="step: the factor at each decay")
    warmup_epochs: float = Field(0, ge=0, description="cosine: epochs of linear warm-up before the decay")
    max_lr: float | None = Field(None, gt=0, description="onecycle: the peak learning rate (default: lr)")

    @model_validator(mode="after")
    def _knobs_of_their_schedule(self) -> "LrScheduleParams":
        _check_knobs(self, "lr_schedule", SCHEDULE_KNOBS)
        return self


class OptimizerParams(BaseModel):
    optimizer: Literal["adamw", "sgd"] = "adamw"
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd: momentum")
    beta1: float = Field(0.9, ge=0, lt=1, description="adamw: first-moment decay")
    beta2: float = Field(0.999, ge=0, lt=1, description="adamw: second-moment decay")

    @model_validator(mode="after")
    def _knobs_of_their_optimizer(self) -> "OptimizerParams":
        _check_knobs(self, "optimizer", OPTIMIZER_KNOBS)
        return self


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

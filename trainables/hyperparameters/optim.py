"""The optimizer choice and the learning-rate schedule a built-in trainable's hyperparameters may take.

``LrScheduleParams`` adds ``lr_schedule: none | step | cosine | onecycle`` with each schedule's own knobs
(``step_size`` and ``gamma``; ``warmup_epochs``; ``max_lr``), and ``OptimizerParams`` adds ``optimizer:
adamw | sgd`` with SGD's ``momentum`` and AdamW's betas. A knob given for a schedule or optimizer that does
not take it is refused (``gamma`` under ``cosine``), as an architecture option is for a model that does
not take it: in a space file such knobs are conditional (``when: {lr_schedule: step}``). What they do is
``trainables/schedules.py``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

SCHEDULE_KNOBS = {"step": ("step_size", "gamma"), "cosine": ("warmup_epochs",), "onecycle": ("max_lr",)}
OPTIMIZER_KNOBS = {"sgd": ("momentum",), "adamw": ("beta1", "beta2")}


def check_knobs(p: BaseModel, choice_field: str, knobs: dict[str, tuple[str, ...]]) -> None:
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
        check_knobs(self, "lr_schedule", SCHEDULE_KNOBS)
        return self


class OptimizerParams(BaseModel):
    optimizer: Literal["adamw", "sgd"] = "adamw"
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd: momentum")
    beta1: float = Field(0.9, ge=0, lt=1, description="adamw: first-moment decay")
    beta2: float = Field(0.999, ge=0, lt=1, description="adamw: second-moment decay")

    @model_validator(mode="after")
    def _knobs_of_their_optimizer(self) -> "OptimizerParams":
        check_knobs(self, "optimizer", OPTIMIZER_KNOBS)
        return self

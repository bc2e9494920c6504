"""Learning-rate schedules and the optimizer choice (``trainables/schedules.py``): the schedule's curve at
known steps, the same curve as torch's OneCycleLR, and knobs refused under a schedule or optimizer that does
not take them. A fused SGD group following its solo twins is in test_fused.py."""

import re

import pytest
import torch
from pydantic import ValidationError

from trainables.registry import get
from trainables.schedules import LrScheduleParams, lr_factor, scheduler


def curve(schedule: dict, steps: int, per_epoch: int, epochs: int, lr: float = 0.1) -> list[float]:
    p = LrScheduleParams(**schedule)
    return [lr_factor(p, lr, s, per_epoch, epochs) for s in range(steps)]


def test_step_decays_by_gamma_every_step_size_epochs():
    c = curve({"lr_schedule": "step", "step_size": 2, "gamma": 0.5}, 60, per_epoch=10, epochs=6)
    assert c[0] == c[19] == 1.0 and c[20] == c[39] == 0.5 and c[40] == c[59] == 0.25


def test_cosine_warms_up_linearly_then_falls_to_zero_through_one_half():
    c = curve({"lr_schedule": "cosine", "warmup_epochs": 1}, 100, per_epoch=10, epochs=10)
    assert c[0] == pytest.approx(0.1) and c[4] == pytest.approx(0.5) and c[9] == pytest.approx(1.0)
    assert c[10] == pytest.approx(1.0) and c[55] == pytest.approx(0.5) and c[99] < 0.001


def test_onecycle_is_torchs_one_cycle():
    total, lr, peak = 1000, 0.01, 0.2
    p = LrScheduleParams(lr_schedule="onecycle", max_lr=peak)
    w = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([w], lr=lr)
    ref = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=peak, total_steps=total)
    ours, theirs = [], []
    for s in range(total):
        ours.append(lr * lr_factor(p, lr, s, 100, 10))
        theirs.append(opt.param_groups[0]["lr"])
        opt.step()
        ref.step()
    assert max(abs(a - b) for a, b in zip(ours, theirs)) < 0.01 * peak
    assert max(ours) == pytest.approx(peak, rel=1e-3) and ours[0] == pytest.approx(peak / 25, rel=1e-2)


@pytest.mark.parametrize("lr", [0.003, 0.01, 0.2])
def test_onecycle_without_max_lr_peaks_at_the_lr_itself(lr):
    """The documented default: the peak is lr (a mutant peaking at 10x lr passed every test)."""
    c = curve({"lr_schedule": "onecycle"}, 1000, per_epoch=100, epochs=10, lr=lr)
    assert max(c) == pytest.approx(1.0, rel=1e-3) and c[0] == pytest.approx(1 / 25, rel=1e-2)


def test_the_scheduler_sets_the_optimizers_learning_rate_per_batch():
    w = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([w], lr=0.1)
    sched = scheduler(opt, LrScheduleParams(lr_schedule="step", step_size=1, gamma=0.1), 0.1, 3, 3)
    seen = []
    for _ in range(9):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([0.1] * 3 + [0.01] * 3 + [0.001] * 3)


@pytest.mark.parametrize(
    ("trainable", "config", "message"),
    [
        ("image-classifier", {"lr_schedule": "cosine", "gamma": 0.5}, "gamma applies to lr_schedule: step only"),
        ("image-classifier", {"max_lr": 0.1}, "max_lr applies to lr_schedule: onecycle only (this one is none)"),
        ("addition-cnn", {"momentum": 0.5}, "momentum applies to optimizer: sgd only (this one is adamw)"),
        ("seq-transformer", {"optimizer": "sgd", "beta1": 0.8}, "beta1 applies to optimizer: adamw only"),
    ],
)
def test_a_knob_of_another_schedule_or_optimizer_is_refused(trainable, config, message):
    with pytest.raises(ValidationError, match=re.escape(message)):
        get(trainable).params(**config)
    get(trainable).params(**{k: v for k, v in config.items() if k in ("lr_schedule", "optimizer")})

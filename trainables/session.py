"""The Session protocol: all a trainable may know about the search around it.

The search layer hands a trainable a Ray-backed session; tests and ``hpsearch train`` hand it the
in-process ``LocalSession`` below. Either way the model code never imports Ray, Optuna or MLflow.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any, Callable, Protocol, Union

if TYPE_CHECKING:  # torch is imported where a session is made: validating a space file needs no torch
    import torch


# A report's checkpoint: the state itself, or a function that makes it, called only when the session keeps
# it (so a trainable can offer one at every step and pay for the copy only when its metric improved).
Checkpoint = Union[dict[str, Any], Callable[[], dict[str, Any]]]


class CheckpointKeeper:
    """Which checkpoint a trial keeps: the one whose step gave the trial's value.

    ``value: best`` (one objective's default): a checkpoint is kept when the metric at its step beats every
    kept one's, the way the trial's value is its best step (ties keep the first, as the value does). ``value:
    last`` (a trade-off's rule): every checkpoint whose metric is a number replaces the one before, since the
    value is the last finite report's (a NaN step's weights are not what scored it). Either way the first
    checkpoint is kept whatever its metric, so a trial never ends with none, and the first finite one
    replaces a NaN or infinite one. As Ray's ``CheckpointConfig(checkpoint_score_attribute=...)`` and Keras'
    ``save_best_only`` do.
    """

    def __init__(self, metric: str | None, mode: str | None, rule: str = "best") -> None:
        self.metric, self.mode, self.rule = metric, mode, rule
        self.kept: float | None = None  # the metric at the kept checkpoint's step
        self.kept_step: int | None = None

    def wants(self, step: int, metrics: dict[str, float]) -> bool:
        """Whether a checkpoint offered with these metrics replaces the kept one (and is then kept)."""
        value = metrics.get(self.metric) if self.metric else None
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        finite = number and math.isfinite(value)
        if self.rule == "last":  # each replaces the one before, but for a step whose metric is NaN or infinite
            better = self.kept_step is None or not number or finite
        else:
            better = self.kept_step is None or (
                finite and (self.kept is None or (value > self.kept if self.mode == "max" else value < self.kept))
            )
        if better:
            self.kept, self.kept_step = (float(value) if finite else None), step
        return better


def plain(metrics: dict[str, Any]) -> dict[str, Any]:
    """A 0-d tensor without a gradient as the number it holds (``loss.detach()`` reported as is); every other
    value as given, for the search to accept (a real number) or refuse (text, a bool) in one line."""
    out = {}
    for key, value in metrics.items():
        if getattr(value, "ndim", None) == 0 and not getattr(value, "requires_grad", False) and hasattr(value, "item"):
            value = value.item()
        out[key] = value
    return out


def materialize(checkpoint: Checkpoint) -> dict[str, Any]:
    return checkpoint() if callable(checkpoint) else checkpoint


class Session(Protocol):
    device: torch.device
    # Set under ``report: time``: evaluate every this many seconds of training, with step = elapsed seconds.
    report_interval_s: float | None
    started: float  # time.monotonic() when the trial started: budgets and time steps count from here

    def report(
        self, step: int, metrics: dict[str, float], checkpoint: Checkpoint | None = None, final: bool = False
    ) -> None:
        """Publish the metrics of one step (epoch 1, 2, ..., or elapsed seconds under a time budget).

        ``checkpoint`` is kept if this step's metric beats the kept checkpoint's (``CheckpointKeeper``): offer
        one at every step (a function that returns it costs nothing when it is not kept), and the trial keeps
        the weights that scored its value. ``final=True`` on the last report says the trial has finished
        training: it is never pruned there (there is nothing left to save), and it ends COMPLETE."""

    def restore(self) -> dict[str, Any] | None:
        """The last checkpoint this trial reported, if it is being resumed."""

    def time_left(self) -> float | None:
        """Seconds left in the trial's budget, or None when the trial has no budget."""

    def start_clock(self) -> None:
        """Training starts now: the trial budget, ``time_left`` and time steps count from here, not from
        the imports and data set-up before (``FitLoop`` calls it; a trainable of its own may)."""


class TrialClock:
    """A session's clock and budget (one for every session): ``started`` is when training started, as
    ``start_clock`` sets it once the imports and data set-up are done; ``time_left`` counts from there."""

    def __init__(self, budget_s: float | None) -> None:
        self.started = time.monotonic()
        self._budget_s = budget_s

    def time_left(self) -> float | None:
        return None if self._budget_s is None else max(0.0, self.started + self._budget_s - time.monotonic())

    def start_clock(self) -> None:
        self.started = time.monotonic()


class LocalSession(TrialClock):
    """Runs a trainable in this process: keeps every report, optionally prints it."""

    def __init__(
        self,
        device: str | torch.device = "cpu",
        budget_s: float | None = None,
        echo: Callable[[str], None] | None = None,
        report_interval_s: float | None = None,
        keeper: CheckpointKeeper | None = None,
    ) -> None:
        import torch

        super().__init__(budget_s)
        self.device = torch.device(device)
        self.report_interval_s = report_interval_s
        self.history: list[tuple[int, dict[str, float]]] = []
        # The kept checkpoint (by ``keeper``'s rule; without one, the last offered) and its step.
        self.last_checkpoint: dict[str, Any] | None = None
        self.checkpoint_step: int | None = None
        self.keeper = keeper or CheckpointKeeper(None, None, "last")
        self._echo = echo

    def report(
        self, step: int, metrics: dict[str, float], checkpoint: dict[str, Any] | None = None, final: bool = False
    ) -> None:
        metrics = plain(metrics)
        self.history.append((step, dict(metrics)))
        if checkpoint is not None and self.keeper.wants(step, metrics):
            self.last_checkpoint, self.checkpoint_step = materialize(checkpoint), step
        if self._echo:
            shown = "  ".join(f"{k}={_fmt(v)}" for k, v in metrics.items())
            self._echo(f"step {step:>5}  {shown}")

    def restore(self) -> dict[str, Any] | None:
        return None

    @property
    def last(self) -> dict[str, float]:
        return self.history[-1][1] if self.history else {}


class GroupSession(Protocol):
    """What a fused trainable sees: one session for a group of members (configurations trained together).

    Members are numbered 0..M-1 in the order the group's configurations were given. Each report carries
    every member still training; a member the search stops (pruned) is in ``stopped()`` from then on and
    must leave the group; ``final`` names the members whose last report this is."""

    device: torch.device
    started: float
    report_interval_s: float | None

    def report(
        self,
        step: int,
        metrics: dict[int, dict[str, float]],
        checkpoints: dict[int, Checkpoint] | None = None,
        final: set[int] = frozenset(),
        failed: dict[int, str] | None = None,
    ) -> None:
        """One step of every member still training (``metrics``), the members that failed since the last
        report with their reasons (``failed``), and the checkpoints members offer (each kept by its own
        member's ``CheckpointKeeper``, as a single trial's)."""

    def stopped(self) -> set[int]:
        """The members the search has stopped (pruned): they stop updating and leave the group."""

    def time_left(self) -> float | None:
        """Seconds left in the trial's budget, or None."""


class LocalGroupSession:
    """A group in this process: each member's reports, as LocalSession keeps one trial's; ``prune_at``
    stops a member after the report of that step (what a pruner would decide), for tests."""

    def __init__(
        self,
        members: int,
        device: str | torch.device = "cpu",
        prune_at: dict[int, int] | None = None,
        keeper: Callable[[], CheckpointKeeper] | None = None,
    ):
        import torch

        self.device = torch.device(device)
        self.started = time.monotonic()
        self.report_interval_s = None
        self.history: dict[int, list[tuple[int, dict[str, float]]]] = {m: [] for m in range(members)}
        self.checkpoints: dict[int, dict[str, Any]] = {}
        self.failed: dict[int, str] = {}
        self.final: set[int] = set()
        self._prune_at = dict(prune_at or {})
        self._stopped: set[int] = set()
        make = keeper or (lambda: CheckpointKeeper(None, None, "last"))
        self.keepers = {m: make() for m in range(members)}

    def report(self, step, metrics, checkpoints=None, final=frozenset(), failed=None) -> None:
        for member, values in metrics.items():
            self.history[member].append((step, dict(values)))
            if self._prune_at.get(member) == step:
                self._stopped.add(member)
        for member, checkpoint in (checkpoints or {}).items():
            if self.keepers[member].wants(step, metrics.get(member, {})):
                self.checkpoints[member] = materialize(checkpoint)
        self.failed |= failed or {}
        self.final |= set(final)

    def stopped(self) -> set[int]:
        return set(self._stopped)

    def time_left(self) -> float | None:
        return None


def _fmt(v: float) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


class ReportClock:
    """When a trainable evaluates: at each epoch's end, or every ``report_interval_s`` of wall-clock time.

    Under a trial budget, trials with different batch sizes run different numbers of epochs in the same
    time, so comparing them at equal epochs is unfair. By time, every trial reports the same steps, the
    nominal elapsed seconds k * interval, and a pruner compares trials at equal training time.
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        self.interval = getattr(session, "report_interval_s", None)
        self.start = session.started
        self._next = self.interval

    @property
    def by_time(self) -> bool:
        return self.interval is not None

    def due(self) -> int | None:
        """Under time reporting: the step to report now, if a report time has passed; skips missed ones."""
        if self.interval is None:
            return None
        elapsed = time.monotonic() - self.start
        if elapsed < self._next:
            return None
        slot = int(elapsed // self.interval) * self.interval
        self._next = slot + self.interval
        return int(round(slot))

    def elapsed_step(self) -> int:
        """The step for a report made off the clock (the final one): whole elapsed seconds."""
        return int(time.monotonic() - self.start)

    def out_of_time(self) -> bool:
        return out_of_time(self.session)


def out_of_time(session: Session) -> bool:
    """Whether the trial's budget (if it has one) is spent."""
    left = session.time_left()
    return left is not None and left <= 0

"""The Session protocol: all a trainable may know about the search around it.

The search layer hands a trainable a Ray-backed session; tests and ``hpsearch train`` hand it the
in-process ``LocalSession`` below. Either way the model code never imports Ray, Optuna or MLflow.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Protocol

if TYPE_CHECKING:  # torch is imported where a session is made: validating a space file needs no torch
    import torch


class Session(Protocol):
    device: torch.device
    # Set under ``report: time``: evaluate every this many seconds of training, with step = elapsed seconds.
    report_interval_s: float | None
    started: float  # time.monotonic() when the trial started: budgets and time steps count from here

    def report(
        self, step: int, metrics: dict[str, float], checkpoint: dict[str, Any] | None = None, final: bool = False
    ) -> None:
        """Publish the metrics of one step (epoch 1, 2, ..., or elapsed seconds under a time budget).

        ``final=True`` on the last report says the trial has finished training: it is never pruned there
        (there is nothing left to save), and it ends COMPLETE."""

    def restore(self) -> dict[str, Any] | None:
        """The last checkpoint this trial reported, if it is being resumed."""

    def time_left(self) -> float | None:
        """Seconds left in the trial's budget, or None when the trial has no budget."""


class LocalSession:
    """Runs a trainable in this process: keeps every report, optionally prints it."""

    def __init__(
        self,
        device: str | torch.device = "cpu",
        budget_s: float | None = None,
        echo: Callable[[str], None] | None = None,
        report_interval_s: float | None = None,
    ) -> None:
        import torch

        self.device = torch.device(device)
        self.report_interval_s = report_interval_s
        self.started = time.monotonic()
        self.history: list[tuple[int, dict[str, float]]] = []
        self.last_checkpoint: dict[str, Any] | None = None
        self._deadline = None if budget_s is None else self.started + budget_s
        self._echo = echo

    def report(
        self, step: int, metrics: dict[str, float], checkpoint: dict[str, Any] | None = None, final: bool = False
    ) -> None:
        self.history.append((step, dict(metrics)))
        if checkpoint is not None:
            self.last_checkpoint = checkpoint
        if self._echo:
            shown = "  ".join(f"{k}={_fmt(v)}" for k, v in metrics.items())
            self._echo(f"step {step:>5}  {shown}")

    def restore(self) -> dict[str, Any] | None:
        return None

    def time_left(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

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
        checkpoints: dict[int, dict[str, Any]] | None = None,
        final: set[int] = frozenset(),
        failed: dict[int, str] | None = None,
    ) -> None:
        """One step of every member still training (``metrics``), the members that failed since the last
        report with their reasons (``failed``), the checkpoints of those that end here."""

    def stopped(self) -> set[int]:
        """The members the search has stopped (pruned): they stop updating and leave the group."""

    def time_left(self) -> float | None:
        """Seconds left in the trial's budget, or None."""


class LocalGroupSession:
    """A group in this process: each member's reports, as LocalSession keeps one trial's; ``prune_at``
    stops a member after the report of that step (what a pruner would decide), for tests."""

    def __init__(self, members: int, device: str | torch.device = "cpu", prune_at: dict[int, int] | None = None):
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

    def report(self, step, metrics, checkpoints=None, final=frozenset(), failed=None) -> None:
        for member, values in metrics.items():
            self.history[member].append((step, dict(values)))
            if self._prune_at.get(member) == step:
                self._stopped.add(member)
        self.checkpoints |= checkpoints or {}
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

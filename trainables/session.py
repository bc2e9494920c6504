"""The Session protocol: all a trainable may know about the search around it.

The search layer hands a trainable a Ray-backed session; tests and ``hpsearch train`` hand it the
in-process ``LocalSession`` below. Either way the model code never imports Ray, Optuna or MLflow.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Protocol

import torch


class Session(Protocol):
    device: torch.device

    def report(self, step: int, metrics: dict[str, float], checkpoint: dict[str, Any] | None = None) -> None:
        """Publish the metrics of one step (an epoch, or elapsed seconds under a time budget)."""

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
    ) -> None:
        self.device = torch.device(device)
        self.history: list[tuple[int, dict[str, float]]] = []
        self.last_checkpoint: dict[str, Any] | None = None
        self._deadline = None if budget_s is None else time.monotonic() + budget_s
        self._echo = echo

    def report(self, step: int, metrics: dict[str, float], checkpoint: dict[str, Any] | None = None) -> None:
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


def _fmt(v: float) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)

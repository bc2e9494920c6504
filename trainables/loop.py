"""The training loop every built-in trainable shares alone, in plain PyTorch: epochs of batches, one
optimizer step per batch, and a report whenever the clock says so (a fused group's loop is ``fused.fit_fused``).

A trainable supplies what is its own (its batches, its step, what it measures in a report) and the loop
does the rest the same way for all of them: reports at each epoch's end, or every
``report_interval_s`` of wall-clock time under a trial budget (``ReportClock``); a running mean of the
training loss between reports; the seconds per epoch for the end-of-run figures; and it stops the
moment a report says the trial is over (last epoch, a target reached, the budget spent).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn

from trainables.session import ReportClock, Session

# report(step, epoch, last_epoch) -> True when the trial is over; the step is the epoch count, or under a
# trial budget the nominal elapsed seconds.
Report = Callable[[int, int, bool], bool]


def shuffled(
    n: int, batch_size: int, gen: torch.Generator, device: torch.device | None = None
) -> Iterator[torch.Tensor]:
    """One epoch's example indices in a fresh random order (drawn from ``gen``), ``batch_size`` at a time."""
    order = torch.randperm(n, generator=gen)
    if device is not None:
        order = order.to(device)
    for i in range(0, n, batch_size):
        yield order[i : i + batch_size]


def optimizer_step(
    opt: torch.optim.Optimizer,
    loss: torch.Tensor,
    params: Iterable[nn.Parameter] | None = None,
    max_norm: float | None = None,
    scaler: torch.amp.GradScaler | None = None,
    before_step: Callable[[], None] | None = None,
) -> None:
    """Zero the gradients, backpropagate, clip them to ``max_norm`` (when given and positive), step; with an
    AMP ``scaler`` the gradients are unscaled before anything reads them. ``before_step`` sees the
    gradients as the optimizer will (e.g. to record their norms)."""
    opt.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
    else:
        loss.backward()
    clip = max_norm is not None and max_norm > 0
    if scaler is not None and (clip or before_step is not None):
        scaler.unscale_(opt)
    if clip:
        nn.utils.clip_grad_norm_(params, max_norm)
    if before_step is not None:
        before_step()
    if scaler is not None:
        scaler.step(opt)
        scaler.update()
    else:
        opt.step()


class FitLoop:
    """Counts what a trainable's reports need (loss since the last report, examples seen) and runs its
    epochs; ``run`` returns when a report says the trial is over or the epochs are done."""

    def __init__(self, session: Session, examples_per_epoch: int) -> None:
        session.start_clock()  # made once the data and model are ready: the budget counts training time
        self.clock = ReportClock(session)
        self.examples_per_epoch = max(examples_per_epoch, 1)
        self.seen = 0  # training examples since this run started
        self._loss, self._n = 0.0, 0

    def add(self, loss: float, examples: int) -> None:
        """One optimizer step's mean loss over its ``examples``."""
        self._loss += loss * examples
        self._n += examples
        self.seen += examples

    def train_loss(self) -> float:
        """The mean training loss since the last call (the last report), then the count starts again."""
        mean = self._loss / max(self._n, 1)
        self._loss, self._n = 0.0, 0
        return mean

    def seconds_per_epoch(self) -> float:
        epochs = max(self.seen / self.examples_per_epoch, 1e-9)
        return (time.monotonic() - self.clock.start) / epochs

    def out_of_time(self) -> bool:
        return self.clock.out_of_time()

    def run(
        self,
        epochs: int,
        batches: Callable[[int], Iterator[Any]],
        train_batch: Callable[[Any], None],
        report: Report,
        start_epoch: int = 0,
    ) -> None:
        clock = self.clock
        for epoch in range(start_epoch, epochs):
            for batch in batches(epoch):
                train_batch(batch)
                if (step := clock.due()) is not None and report(step, epoch, False):
                    return
            last = epoch == epochs - 1
            if not clock.by_time:
                if report(epoch + 1, epoch, last):
                    return
            elif last or clock.out_of_time():
                report(clock.elapsed_step(), epoch, True)  # the final report, off the clock
                return

"""The trial budget (``budget.trial``), in one place: two watches, because a trial may stop reporting.

* ``TrialBudgetStopper`` (a Ray ``Stopper``) stops a trial at its first report past the budget, by the
  trial's own clock (``elapsed_s``);
* ``BudgetWatch`` (asked by the schedulers on every step of Ray's loop, ``tune_glue.py``) stops a trial
  that is past it without reporting at all, after ``budget.startup`` for its first report.
"""

from __future__ import annotations

import time

from ray import tune
from ray.tune.experiment import Trial

from search.names import ELAPSED_KEY


class TrialBudgetStopper(tune.Stopper):
    """The trial budget for every trainable: a trial is stopped at its first report past the budget.

    A trainable that watches ``session.time_left()`` makes its last report itself, with its end-of-run
    summary, within one report interval of the limit; one that does not is stopped here all the same,
    at its first report past the limit plus that interval. Either way the trial ends COMPLETE with the
    best value it reached within its time. Time is the trial's own clock (``elapsed_s``), not Ray's,
    which also counts the worker's start-up.
    """

    def __init__(self, budget_s: float, grace_s: float) -> None:
        self.limit_s = budget_s + grace_s

    def __call__(self, trial_id: str, result: dict) -> bool:
        return result.get(ELAPSED_KEY, 0.0) >= self.limit_s

    def stop_all(self) -> bool:
        return False


class BudgetWatch:
    """The trial budget without the trainable's help: a trial past it is stopped even if it stopped
    reporting (hung in a data loader, a deadlock, a very long epoch).

    A trainable's own clock starts after its imports and data set-up; the driver learns it from the first
    report (now - elapsed_s). Ray asks the scheduler which trial to run on every step of its loop (about
    ten times a second), so that is where the watch looks. A trial stopped here ends as a budget stop
    does: COMPLETE with the best value it reported, or FAIL if it reported none.
    """

    STARTUP_ALLOWANCE_S = 60.0  # before a first report: worker start, imports, data loading (budget.startup)
    LATENESS_S = 5.0  # after the limit: a report due at the limit may be on its way

    def __init__(self, limit_s: float | None, startup_s: float = STARTUP_ALLOWANCE_S) -> None:
        self.limit_s = limit_s
        self.startup_s = startup_s
        self.zero: dict[str, float] = {}  # trial id -> driver time at which the trial's own clock read 0
        self.measured: set[str] = set()  # trials whose zero came from a report, not from a first sighting

    def saw_result(self, trial_id: str, result: dict) -> None:
        if self.limit_s is not None and trial_id not in self.measured and ELAPSED_KEY in result:
            self.zero[trial_id] = time.monotonic() - float(result[ELAPSED_KEY])
            self.measured.add(trial_id)

    def overdue(self, trials: list[Trial]) -> list[Trial]:
        if self.limit_s is None:
            return []
        now, late = time.monotonic(), []
        for trial in trials:
            if trial.status != Trial.RUNNING:
                continue
            zero = self.zero.setdefault(trial.trial_id, now + self.startup_s)  # first seen running
            if now > zero + self.limit_s + self.LATENESS_S:
                late.append(trial)
        return late

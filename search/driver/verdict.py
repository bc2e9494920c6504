"""How a configuration ended, judged from its seeds: the state told to the study, its values, its
constraints; and the fail-fast watch over the first trials' errors.

Pure functions of the seeds' records (no study, no store): the bridge asks them, then writes what they
say. Kept apart so the rules a user reads results by (a failed seed fails the configuration; the value is
the mean over seeds; a constraint's metric that was never reported fails it) sit in one short file.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field

from optuna.trial import TrialState

from search.driver.trial_records import NOT_METRICS, TrialRecord
from search.space.constraints import Constraint, violations

_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def final_state(
    seeds: list[TrialRecord], repeats: int, missing: TrialState | None, reason: str
) -> tuple[TrialState, str]:
    """FAIL if a seed failed (or, for seeds that never ran, ``missing``), PRUNED if one was pruned, else
    COMPLETE; with the reason to record (a failed seed's own, before the caller's)."""
    states = {r.state for r in seeds} | ({missing} if missing and len(seeds) < repeats else set())
    if TrialState.FAIL in states:
        return TrialState.FAIL, next((r.failure for r in seeds if r.state == TrialState.FAIL), None) or reason
    if TrialState.PRUNED in states:
        return TrialState.PRUNED, reason
    return TrialState.COMPLETE, reason


def mean_values(seeds: list[TrialRecord]) -> list[float]:
    """The configuration's value of each objective: the mean over its seeds."""
    return [statistics.fmean(column) for column in zip(*(r.values for r in seeds))]


def std_values(seeds: list[TrialRecord]) -> list[float]:
    return [statistics.stdev(column) for column in zip(*(r.values for r in seeds))]


def constraint_amounts(constraints: list[Constraint], seeds: list[TrialRecord]) -> tuple[dict[str, float], str | None]:
    """Each constraint's violation on the configuration's final metrics (the mean over its seeds of each
    metric every seed reported); or, when a constraint's metric was never reported, the reason it cannot
    be judged (the configuration then fails: a constraint nobody measured is not a feasible one)."""
    reported = [r.latest for r in seeds if r.latest]
    finals = {
        k: statistics.fmean(latest[k] for latest in reported)
        for k in {k for latest in reported for k in latest}
        if all(k in latest for latest in reported)
    }
    try:
        return violations(constraints, finals), None
    except KeyError as e:
        metric = e.args[0]
        text = next(c.text for c in constraints if c.metric == metric)
        shown = ", ".join(sorted(k for k in finals if k not in NOT_METRICS))
        return {}, f"constraint {text!r}: metric {metric!r} was not reported (reported: {shown or 'nothing'})"


@dataclass
class FailFast:
    """The first ``first`` configurations all raised the same error and none completed or was pruned:
    the set-up is broken, and ``failing`` holds that error once it is so. "The same" ignores the numbers
    an error quotes (a trial's x=0.41, a size). 0 watches nothing."""

    first: int = 0
    failing: str | None = None
    _raised: list[str] = field(default_factory=list)
    _finished_any: bool = False

    def saw(self, final: TrialState, seeds: list[TrialRecord]) -> None:
        if final in (TrialState.COMPLETE, TrialState.PRUNED):
            self._finished_any = True
        if self._finished_any or not self.first or self.failing is not None or final != TrialState.FAIL:
            return
        raised = next((r.failure for r in seeds if r.raised and r.failure), None)
        if raised is None:
            return
        self._raised.append(raised)
        lines = self._raised[: self.first]
        if len(lines) == self.first and len({_NUMBER.sub("#", line) for line in lines}) == 1:
            self.failing = lines[0]

"""The bridge's record of each trial (``TrialRecord``, live, the bridge's own) and the read-only copy the
rest of the driver sees (``TrialView``), with what a result holds that the trainable measured.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any, Protocol

import optuna
from optuna.trial import TrialState
from ray.tune.result import AUTO_RESULT_KEYS

from search.names import SESSION_KEYS
from search.space.constraints import all_hold


@dataclass
class TrialRecord:
    """What the driver knows of one Ray trial: its Optuna trial, its repeat, and how it ended, if it has.

    With ``repeats: N`` one Optuna trial (a configuration) runs as N Ray trials with seeds seed+0..N-1;
    they share ``optuna_trial`` and ``seeds``, and the study is told once, when the last one ends.
    """

    optuna_trial: optuna.Trial
    key: str = ""  # its key in the bridge: the Ray trial id, or "<ray id>#<member>" in a fused group
    repeat: int = 0
    member: int | None = None  # its place in a fused group (one Ray trial training several configurations)
    seeds: list["TrialRecord"] = field(default_factory=list)  # the records of its configuration's seeds
    best: float | None = None  # the best value; of a trade-off, the first metric's value in its last report
    values: tuple[float, ...] | None = None  # a trade-off's vector: its last finite report's values
    last_step: int | None = None
    pruned_at: int | None = None
    failure: str | None = None
    state: TrialState | None = None  # how this Ray trial ended
    final: bool = False  # the trainable said its last report came: it trained fully, never pruned now
    log_dir: str | None = None  # where its stdout, stderr and traceback were put
    latest: dict[str, float] = field(default_factory=dict)  # every number of its latest report
    violations: dict[str, float] | None = None  # each constraint's violation, once the trial ended
    value_step: int | None = None  # the step whose report gave its value (best, or last)
    raised: bool = False  # it failed by raising (its failure is the exception's line), not by what it reported
    checkpoint_step: int | None = None  # the step of the checkpoint it kept (names.KEPT_KEY)
    checkpoint_metrics: dict[str, float] | None = None  # what that step reported: what its weights scored


# Keys of a result that Ray Tune adds to every report.
RAY_KEYS = frozenset(AUTO_RESULT_KEYS) | {"done", "trial_id", "experiment_tag", "should_checkpoint"}
# Keys of a result that are Ray's or the session's bookkeeping, not something the trainable measured: the one
# list every room of the driver filters metrics with (tracking.py also logs names.ELAPSED_KEY to MLflow).
NOT_METRICS = RAY_KEYS | SESSION_KEYS


def is_number(value: Any) -> bool:
    """A metric's value: a real number (int, float, a numpy scalar), never a bool or text."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def measured(result: dict[str, Any]) -> dict[str, float]:
    """The numbers a trainable reported in a result (its metrics), without Ray's and the session's own."""
    return {
        k: float(v)
        for k, v in result.items()
        if k not in NOT_METRICS
        and not k.startswith("config/")  # Ray adds the trial's config to each result
        and is_number(v)
    }


class TellHook(Protocol):
    """Another store's part in ending a trial: ``before_tell(key)`` starts writing what it holds of the
    trial (and returns user attributes for the study's trial); ``written()`` returns once it is written."""

    def before_tell(self, key: str) -> dict[str, Any]: ...

    def written(self) -> None: ...


@dataclass(frozen=True)
class TrialView:
    """One Ray trial as the rest of the driver sees it (tracking, progress, the summary): a copy, read-only,
    with no live Optuna object; the bridge alone writes the study."""

    ray_trial_id: str  # the Ray trial; of a fused group's member, "<ray trial id>#<member>"
    number: int  # the Optuna trial's number (shared by the seeds of a repeated configuration)
    repeat: int
    member: int | None  # its place in a fused group
    params: dict[str, Any]
    state: TrialState | None  # None while it runs
    best: float | None
    values: tuple[float, ...] | None  # every objective's value, in the sweep's metric order
    last_step: int | None
    pruned_at: int | None
    failure: str | None
    log_dir: str | None
    latest: dict[str, float]  # every number of its latest report
    violations: dict[str, float] | None  # constraint -> violation (feasible at <= 0), once it ended
    value_step: int | None = None
    checkpoint_step: int | None = None
    checkpoint_metrics: dict[str, float] | None = None

    @property
    def feasible(self) -> bool | None:
        return None if self.violations is None else all_hold(self.violations)


def view_of(ray_trial_id: str, rec: TrialRecord) -> TrialView:
    return TrialView(
        ray_trial_id=ray_trial_id,
        number=rec.optuna_trial.number,
        repeat=rec.repeat,
        member=rec.member,
        params=dict(rec.optuna_trial.params),
        state=rec.state,
        best=rec.best,
        values=rec.values,
        last_step=rec.last_step,
        pruned_at=rec.pruned_at,
        failure=rec.failure,
        log_dir=rec.log_dir,
        latest=dict(rec.latest),
        violations=None if rec.violations is None else dict(rec.violations),
        value_step=rec.value_step,
        checkpoint_step=rec.checkpoint_step,
        checkpoint_metrics=None if rec.checkpoint_metrics is None else dict(rec.checkpoint_metrics),
    )

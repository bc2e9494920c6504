"""Optuna inside Ray Tune, with Optuna's own semantics kept.

Ray's stock ``OptunaSearch`` never asks an Optuna pruner, and when a Ray scheduler stops a trial it tells
the study COMPLETE with the partial value, so TPE learns from half-trained trials and the dashboard shows
no pruned trial. Here one ``OptunaBridge`` owns the study and the Ray-trial -> Optuna-trial map:

* ``OptunaSearcher`` (a Ray ``Searcher``) asks the study for each new trial and tells it the outcome.
* ``PruningScheduler`` (a Ray ``FIFOScheduler``) records every reported step on the Optuna trial, so the
  dashboard shows intermediate values live, and stops the trial when the study's pruner says so.
* ``ReportingASHA`` does the same recording under Ray's ASHA and marks the trials ASHA stops as pruned.

Stopped-by-pruning trials end PRUNED in the study, never COMPLETE. Only the driver writes the study.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import TrialState
from ray.tune.experiment import Trial
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from search.ray_session import FINAL_KEY

log = logging.getLogger(__name__)


@dataclass
class TrialRecord:
    """What the driver knows of one Ray trial: its Optuna trial, its repeat, and how it ended, if it has.

    With ``repeats: N`` one Optuna trial (a configuration) runs as N Ray trials with seeds seed+0..N-1;
    they share ``optuna_trial`` and ``group``, and the study is told once, when the last one ends.
    """

    optuna_trial: optuna.Trial
    repeat: int = 0
    group: list["TrialRecord"] = field(default_factory=list)
    best: float | None = None
    last_step: int | None = None
    pruned_at: int | None = None
    failure: str | None = None
    state: TrialState | None = None  # how this Ray trial ended
    final: bool = False  # the trainable said its last report came: it trained fully, never pruned now
    log_dir: str | None = None  # where its stdout, stderr and traceback were put
    latest: dict[str, float] = field(default_factory=dict)  # every number of its latest report


@dataclass(frozen=True)
class TrialView:
    """One Ray trial as the rest of the driver sees it (tracking, progress, the summary): a copy, read-only,
    with no live Optuna object; the bridge alone writes the study."""

    ray_trial_id: str
    number: int  # the Optuna trial's number (shared by the seeds of a repeated configuration)
    repeat: int
    params: dict[str, Any]
    state: TrialState | None  # None while it runs
    best: float | None
    last_step: int | None
    pruned_at: int | None
    failure: str | None
    log_dir: str | None
    latest: dict[str, float]  # every number of its latest report


class OptunaBridge:
    def __init__(
        self,
        study: optuna.Study,
        distributions: dict[str, BaseDistribution],
        fixed_config: dict[str, Any],
        metric: str,
        mode: str,
        n_trials: int,
        repeats: int = 1,
    ) -> None:
        self.study = study
        self.repeats = repeats
        self._open_group: list[TrialRecord] = []
        self._told: set[int] = set()  # Optuna trial numbers already told
        self.distributions = distributions
        self.fixed_config = fixed_config
        self.metric = metric
        self.mode = mode
        self.n_trials = n_trials
        self._records: dict[str, TrialRecord] = {}

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles its search algorithm and scheduler with the experiment; the study lives in its own
        # storage, so only the settings travel (the driver's live objects never leave the driver).
        # The live objects (the study, the records and the configuration being repeated, which hold the
        # study) stay here: pickled, they would carry the storage URL, password included, into Ray's files.
        return {k: v for k, v in self.__dict__.items() if k not in ("study", "_records", "_open_group")}

    # -- asking ---------------------------------------------------------------------------------------

    def ask(self, ray_trial_id: str) -> dict[str, Any] | None:
        """A Ray trial's config: a new Optuna trial, or the next seed of the configuration being repeated."""
        group = self._open_group
        if not group or len(group) >= self.repeats:
            if len(self._records) >= self.n_trials * self.repeats:
                return None
            group = self._open_group = []
            trial = self._ask()
        else:
            trial = group[0].optuna_trial
        rec = TrialRecord(trial, repeat=len(group), group=group)
        group.append(rec)
        self._records[ray_trial_id] = rec
        ids = [rid for rid, r in self._records.items() if r.optuna_trial is trial]
        trial.set_user_attr("ray_trial_id", ids[0] if self.repeats == 1 else ids)
        config = {**self.fixed_config, **trial.params}
        if self.repeats > 1:
            config["seed"] = config.get("seed", 0) + rec.repeat
        return config

    def _ask(self) -> optuna.Trial:
        """``study.ask``, closing the trial it may have created before it failed (a sampler that raises
        while sampling leaves a RUNNING trial no record knows, which nothing would ever end)."""
        known = max((r.optuna_trial.number for r in self._records.values()), default=-1)
        try:
            return self.study.ask(self.distributions)
        except Exception as e:
            for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                if t.number > known:
                    self.study.tell(t.number, state=TrialState.FAIL)
                    log.error("trial %d could not be sampled: %s", t.number, e)
            raise

    # -- reading --------------------------------------------------------------------------------------

    def view(self, ray_trial_id: str) -> TrialView | None:
        rec = self._records.get(ray_trial_id)
        return None if rec is None else _view(ray_trial_id, rec)

    def views(self) -> list[TrialView]:
        """Every Ray trial this run started, by trial number and seed."""
        views = [_view(rid, rec) for rid, rec in self._records.items()]
        return sorted(views, key=lambda v: (v.number, v.repeat))

    def number(self, ray_trial_id: str) -> int | None:
        rec = self._records.get(ray_trial_id)
        return rec.optuna_trial.number if rec else None

    def finished_trials(self) -> list[optuna.trial.FrozenTrial]:
        """This run's Optuna trials (one per configuration) as the study recorded them."""
        numbers = {r.optuna_trial.number for r in self._records.values()}
        return [t for t in self.study.get_trials(deepcopy=False) if t.number in numbers]

    def set_log_dir(self, ray_trial_id: str, path: str) -> None:
        if (rec := self._records.get(ray_trial_id)) is not None:
            rec.log_dir = path

    def set_attr(self, ray_trial_id: str, key: str, value: Any) -> None:
        if (rec := self._records.get(ray_trial_id)) is not None:
            rec.optuna_trial.set_user_attr(key, value)

    # -- reporting ------------------------------------------------------------------------------------

    def report(self, ray_trial_id: str, result: dict[str, Any]) -> bool:
        """Record one step on the Optuna trial. Returns False if the trial must stop (no usable metric)."""
        rec = self._records.get(ray_trial_id)
        if rec is None or rec.state is not None:
            return True
        value = result.get(self.metric)
        if value is None:
            reported = ", ".join(sorted(k for k in result if not k.startswith(("time_", "timestamp"))))
            rec.failure = f"metric {self.metric!r} was not reported (reported: {reported})"
            return False
        step = int(result.get("step", result.get("training_iteration", 0)))
        if rec.last_step is not None and step <= rec.last_step:
            return True
        value = float(value)
        rec.last_step = step
        rec.final = bool(result.get(FINAL_KEY))
        rec.latest.update(
            {k: float(v) for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        )
        if math.isfinite(value):
            if rec.repeat == 0:  # the study's curve of a repeated configuration is its first seed's
                rec.optuna_trial.report(value, step)
            if rec.best is None or (value > rec.best if self.mode == "max" else value < rec.best):
                rec.best = value
        return True

    def should_prune(self, ray_trial_id: str) -> bool:
        rec = self._records.get(ray_trial_id)
        if rec is None or rec.state is not None or rec.last_step is None or rec.final:
            return False
        if rec.optuna_trial.should_prune():
            self.mark_pruned(ray_trial_id)
            return True
        return False

    def record_error(self, trial: Trial) -> None:
        """Keep the last line of a trial's exception; Ray tells schedulers of errors before searchers."""
        if (rec := self._records.get(trial.trial_id)) is not None:
            rec.failure = error_line(trial)

    def mark_pruned(self, ray_trial_id: str) -> None:
        rec = self._records.get(ray_trial_id)
        if rec is not None and rec.pruned_at is None:
            rec.pruned_at = rec.last_step

    # -- telling --------------------------------------------------------------------------------------

    def complete(self, ray_trial_id: str, result: dict[str, Any] | None, error: bool) -> None:
        rec = self._records.get(ray_trial_id)
        if rec is None or rec.state is not None:
            return
        if result and not error:
            self.report(ray_trial_id, result)
        if error or rec.failure:
            self._tell(rec, TrialState.FAIL, reason=rec.failure or "the trial raised an error")
        elif rec.pruned_at is not None:
            rec.optuna_trial.set_user_attr("pruned_at_step", rec.pruned_at)
            self._tell(rec, TrialState.PRUNED)
        elif rec.best is None:
            self._tell(rec, TrialState.FAIL, reason=f"no finite value of {self.metric!r} was reported")
        else:
            self._tell(rec, TrialState.COMPLETE)

    def finish_open(self, reason: str, as_pruned: bool) -> list[str]:
        """End every trial Ray stopped without telling us: PRUNED at the sweep budget (stopped early, not
        failed, intermediate values kept), FAIL when interrupted (it may be run again)."""
        ended = []
        for ray_id, rec in self._records.items():
            if rec.state is None:
                rec.optuna_trial.set_user_attr("stopped", reason)
                self._tell(rec, TrialState.PRUNED if as_pruned else TrialState.FAIL, reason=reason)
                ended.append(ray_id)
        for rec in self._records.values():  # configurations whose later seeds never started
            if rec.optuna_trial.number not in self._told:
                rec.optuna_trial.set_user_attr("stopped", reason)
                self._tell_group(rec.group, TrialState.PRUNED if as_pruned else TrialState.FAIL, reason)
        return ended

    def _tell(self, rec: TrialRecord, state: TrialState, reason: str = "") -> None:
        """End one Ray trial; tell the study once its whole group (its repeats) has ended."""
        rec.state = state
        if reason and rec.failure is None and state == TrialState.FAIL:
            rec.failure = reason
        if len(rec.group) == self.repeats and all(r.state is not None for r in rec.group):
            self._tell_group(rec.group, None, reason)

    def _tell_group(self, group: list[TrialRecord], missing: TrialState | None, reason: str) -> None:
        """Tell the study how a configuration ended: FAIL if a seed failed (or, for seeds that never ran,
        ``missing``), PRUNED if one was pruned, else COMPLETE with the mean of its seeds' values."""
        trial = group[0].optuna_trial
        if trial.number in self._told:
            return
        self._told.add(trial.number)
        states = {r.state for r in group} | ({missing} if missing and len(group) < self.repeats else set())
        if TrialState.FAIL in states:
            final, values = TrialState.FAIL, None
            reason = next((r.failure for r in group if r.state == TrialState.FAIL), None) or reason
        elif TrialState.PRUNED in states:
            final, values = TrialState.PRUNED, None
        else:
            final, values = TrialState.COMPLETE, [r.best for r in group]
        if reason:
            trial.set_user_attr("fail_reason" if final == TrialState.FAIL else "reason", reason)
        if len(group) > 1:
            trial.set_user_attr("repeat_values", [r.best for r in group])
            if values is not None:
                trial.set_user_attr("value_std", statistics.stdev(values))
        value = statistics.fmean(values) if values is not None else None
        self.study.tell(trial, value, state=final)


def _view(ray_trial_id: str, rec: TrialRecord) -> TrialView:
    return TrialView(
        ray_trial_id=ray_trial_id,
        number=rec.optuna_trial.number,
        repeat=rec.repeat,
        params=dict(rec.optuna_trial.params),
        state=rec.state,
        best=rec.best,
        last_step=rec.last_step,
        pruned_at=rec.pruned_at,
        failure=rec.failure,
        log_dir=rec.log_dir,
        latest=dict(rec.latest),
    )


class OptunaSearcher(Searcher):
    def __init__(self, bridge: OptunaBridge) -> None:
        super().__init__(metric=bridge.metric, mode=bridge.mode)
        self.bridge = bridge

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        config = self.bridge.ask(trial_id)
        return Searcher.FINISHED if config is None else config

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self.bridge.complete(trial_id, result, error)

    # The search state is the Optuna study in its RDB storage; Ray's own searcher checkpoint is not needed.
    def save(self, checkpoint_path: str) -> None:
        pass

    def restore(self, checkpoint_path: str) -> None:
        pass


class BudgetWatch:
    """The trial budget without the trainable's help: a trial past it is stopped even if it stopped
    reporting (hung in a data loader, a deadlock, a very long epoch).

    A trainable's own clock starts after its imports and data set-up; the driver learns it from the first
    report (now - elapsed_s). Ray asks the scheduler which trial to run on every step of its loop (about
    ten times a second), so that is where the watch looks. A trial stopped here ends as a budget stop
    does: COMPLETE with the best value it reported, or FAIL if it reported none.
    """

    STARTUP_ALLOWANCE_S = 60.0  # before a first report: worker start, imports, data loading
    LATENESS_S = 5.0  # after the limit: a report due at the limit may be on its way

    def __init__(self, limit_s: float | None) -> None:
        self.limit_s = limit_s
        self.zero: dict[str, float] = {}  # trial id -> driver time at which the trial's own clock read 0
        self.measured: set[str] = set()  # trials whose zero came from a report, not from a first sighting

    def saw_result(self, trial_id: str, result: dict) -> None:
        if self.limit_s is not None and trial_id not in self.measured and "elapsed_s" in result:
            self.zero[trial_id] = time.monotonic() - float(result["elapsed_s"])
            self.measured.add(trial_id)

    def overdue(self, trials: list[Trial]) -> list[Trial]:
        if self.limit_s is None:
            return []
        now, late = time.monotonic(), []
        for trial in trials:
            if trial.status != Trial.RUNNING:
                continue
            zero = self.zero.setdefault(trial.trial_id, now + self.STARTUP_ALLOWANCE_S)  # first seen running
            if now > zero + self.limit_s + self.LATENESS_S:
                late.append(trial)
        return late


class _BridgedScheduler:
    """What both schedulers do beside deciding: keep a failed trial's error line for the bridge (Ray tells
    schedulers of errors before searchers), and stop trials past their budget on every loop step."""

    bridge: OptunaBridge
    watch: BudgetWatch

    def choose_trial_to_run(self, tune_controller: Any) -> Trial | None:
        for trial in self.watch.overdue(tune_controller.get_live_trials()):
            self.bridge.set_attr(trial.trial_id, "stopped", "trial budget (no report in time)")
            tune_controller.stop_trial(trial)
        return super().choose_trial_to_run(tune_controller)

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        self.bridge.record_error(trial)
        super().on_trial_error(tune_controller, trial)

    def attach(self, bridge: OptunaBridge, trial_limit_s: float | None) -> None:
        """Built when the space is validated (its options checked once), attached when the sweep runs."""
        self.bridge = bridge
        self.watch = BudgetWatch(trial_limit_s)

    def _recorded(self, trial: Trial, result: dict) -> bool:
        """Record the step on the study; False when the trial must stop (it did not report the metric)."""
        self.watch.saw_result(trial.trial_id, result)
        return self.bridge.report(trial.trial_id, result)


class PruningScheduler(_BridgedScheduler, FIFOScheduler):
    """Records each step on the study and stops the trial when the study's pruner says so."""

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        if not self._recorded(trial, result) or self.bridge.should_prune(trial.trial_id):
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE


class ReportingASHA(_BridgedScheduler, AsyncHyperBandScheduler):
    """Ray's ASHA deciding, the study recording: trials ASHA stops end PRUNED, not COMPLETE. It takes
    ASHA's own options (its signature is ASHA's), so they are checked as ASHA's."""

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        if not self._recorded(trial, result):
            return TrialScheduler.STOP
        decision = super().on_trial_result(tune_controller, trial, result)
        # ASHA also says STOP when a trial reaches max_t: that one finished, it was not pruned.
        if decision == TrialScheduler.STOP and result[self._time_attr] < self._max_t and not result.get(FINAL_KEY):
            self.bridge.mark_pruned(trial.trial_id)
        return decision


def error_line(trial: Trial) -> str:
    """The last line of a failed trial's traceback: the exception and its message."""
    # Ray writes the trace to the trial's local directory first and syncs it to storage later.
    local = Path(trial.error_file) if trial.error_file else None
    if local is not None and local.is_file():
        text = local.read_text()
    else:
        error = trial.get_error()
        text = str(error) if error is not None else "the trial raised an error"
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else text

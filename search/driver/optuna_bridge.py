"""Optuna inside Ray Tune, with Optuna's own semantics kept.

Two words for two things: a configuration's **seeds** are the Ray trials ``repeats`` runs of it (one Optuna
trial, told once all have ended); a fused **group** is one Ray trial that trains several configurations
(its **members**, one Optuna trial each).

Ray's stock ``OptunaSearch`` never asks an Optuna pruner, and when a Ray scheduler stops a trial it tells
the study COMPLETE with the partial value, so TPE learns from half-trained trials and the dashboard shows
no pruned trial. Here one ``OptunaBridge`` owns the study and the Ray-trial -> Optuna-trial map: the
ledger of trials, and all that is told to the study. Ray Tune reaches it through the searcher and the
schedulers of ``tune_glue.py``; the trial budget is ``trial_budget.py``'s; a fused group's routing is
``fused_routing.py``'s, and how a configuration ended (state, mean over seeds, constraints, fail-fast)
``verdict.py``'s.

Stopped-by-pruning trials end PRUNED in the study, never COMPLETE. Only the driver writes the study.

A trade-off sweep (several metrics) is the same loop with a vector for a value: the study has one
direction per metric, a trial's values are those of its last report, and since Optuna stores no
multi-valued intermediate values, each step's vector is kept as the user attribute ``intermediate.<step>``
(the dashboard lists it) and the front pruner (``search/space/pareto.py``) decides. Constraints are told to
Optuna with each trial (``Trial.set_constraint``), so its ``best_trials`` hold feasible trials only.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.experiment import Trial

from search.driver.bridge_settings import BridgeSettings
from search.driver.fused_routing import FusedRouting
from search.driver.trial_records import TellHook, TrialRecord, TrialView, is_number, measured, view_of
from search.driver.verdict import FailFast, constraint_amounts, final_state, mean_values, std_values
from search.errors import SamplerError
from search.names import (
    CHECKPOINT_METRICS_ATTR,
    CHECKPOINT_STEP_ATTR,
    FAIL_REASON_ATTR,
    FEASIBLE_ATTR,
    FINAL_KEY,
    KEPT_KEY,
    PRUNED_AT_ATTR,
    RAY_TRIAL_ATTR,
    REASON_ATTR,
    REPEAT_VALUES_ATTR,
    STEP_KEY,
    STOPPED_ATTR,
    VALUE_STD_ATTR,
    VALUE_STEP_ATTR,
)
from search.space import conditions
from search.space.constraints import all_hold
from search.space.pareto import INTERMEDIATE_ATTR, ParetoPruner, history, signed
from search.stores.trial_logs import error_line
from search.stores.write_behind import StudyWrites, tell

log = logging.getLogger(__name__)


class OptunaBridge(FusedRouting):
    def __init__(
        self,
        study: optuna.Study,
        settings: BridgeSettings,
        front_pruner: ParetoPruner | None = None,
        trial_attrs: dict[str, Any] | None = None,
    ) -> None:
        """``front_pruner``: a trade-off's Pareto pruner (seeded here with the study's finished trials);
        ``trial_attrs``: user attributes every trial this run asks gets."""
        self.study = study
        self.trial_attrs = dict(trial_attrs or {})
        self.repeats = settings.repeats
        self._open_seeds: list[TrialRecord] = []
        self._told: set[int] = set()  # Optuna trial numbers already told
        self.distributions = settings.distributions
        self.space = settings.space  # a conditional space: each trial sets only its active parameters
        self.fixed_config = settings.fixed_config
        self.metrics, self.modes = list(settings.metrics), list(settings.modes)
        self.metric, self.mode = self.metrics[0], self.modes[0]  # the first (the only one, mostly)
        self.multi = len(self.metrics) > 1
        # best: a trial's value is its best step's metric; last: its last report's (always, for a trade-off)
        self.value_rule = "last" if self.multi else (settings.value_rule or "best")
        self.constraints = list(settings.constraints)
        self.n_trials = settings.n_trials
        self._records: dict[str, TrialRecord] = {}
        # Fused trials: a Ray trial carries a group of Optuna trials (members), each keyed "<ray id>#<member>".
        self.fuse, self.fuse_key = settings.fuse, settings.fuse_key
        self.round_size, self.concurrency = settings.round_size, settings.concurrency  # fused groups' rounds
        self._fused: dict[str, list[str]] = {}  # Ray trial id -> its members' keys
        self._pending: list[list[optuna.Trial]] = []  # groups asked, not yet given to a Ray trial
        self._asked = 0
        self._stops: dict[str, list[int]] = {}  # Ray trial id -> members pruned since the worker was told
        self.front_pruner = front_pruner
        # the error every one of the first settings.fail_fast trials raised, once it is so
        self._fail_fast = FailFast(first=settings.fail_fast)
        # A running trial's steps and attributes reach the study in one write a second (write_behind.py);
        # the other stores finish writing a trial before it is told (tracking: its MLflow run).
        self._writes = StudyWrites()
        self.tell_hooks: list[TellHook] = []
        if front_pruner is not None:
            front_pruner.seed(history(self.study.get_trials(deepcopy=False), self.modes, self.multi))

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles its search algorithm and scheduler with the experiment; the study lives in its own
        # storage, so only the settings travel (the driver's live objects never leave the driver).
        # The live objects (the study, the records and the configuration being repeated, which hold the
        # study) stay here: pickled, they would carry the storage URL, password included, into Ray's files.
        live = ("study", "_records", "_open_seeds", "_pending", "fuse_key", "_writes", "tell_hooks")
        return {k: v for k, v in self.__dict__.items() if k not in live}

    # -- asking ---------------------------------------------------------------------------------------

    def ask(self, ray_trial_id: str) -> dict[str, Any] | object | None:
        """A Ray trial's config: a new Optuna trial, or the next seed of the configuration being repeated;
        with ``fuse``, a fused group of Optuna trials that train as one (``{"members": [config, ...]}``).
        None once every trial was asked; ``NOT_YET`` while a round of fused groups is still running."""
        if self.fuse > 1:
            return self._ask_fused(ray_trial_id)
        seeds = self._open_seeds
        if not seeds or len(seeds) >= self.repeats:
            if len(self._records) >= self.n_trials * self.repeats:
                return None
            seeds = self._open_seeds = []
            trial = self._ask()
        else:
            trial = seeds[0].optuna_trial
        rec = TrialRecord(trial, key=ray_trial_id, repeat=len(seeds), seeds=seeds)
        seeds.append(rec)
        self._records[ray_trial_id] = rec
        ids = [rid for rid, r in self._records.items() if r.optuna_trial is trial]
        self._writes.set_attr(trial, RAY_TRIAL_ATTR, ids[0] if self.repeats == 1 else ids)
        config = {**self.fixed_config, **trial.params}
        if self.repeats > 1:
            config["seed"] = config.get("seed", 0) + rec.repeat
        return config

    def _ask(self) -> optuna.Trial:
        """``study.ask``, closing the trial it may have created before it failed (a sampler that raises
        while sampling leaves a RUNNING trial no record knows, which nothing would ever end)."""
        known = max((r.optuna_trial.number for r in self._records.values()), default=-1)
        try:
            if self.space is None:
                trial = self.study.ask(self.distributions)
            else:
                trial = conditions.ask(self.study, self.distributions, self.space)
            for key, value in self.trial_attrs.items():
                self._writes.set_attr(trial, key, value)
            return trial
        except Exception as e:
            number = known + 1
            for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                if t.number > known:
                    self.study.tell(t.number, state=TrialState.FAIL)
                    number = t.number
            sampler = type(self.study.sampler).__name__
            line = f"{type(e).__name__}: {e}".strip().splitlines()[0]
            raise SamplerError(
                f"the {sampler} failed to sample trial {number} ({line}), so the sweep stopped: check the "
                "sampler's options in the space file (sampler:); what finished is kept",
                "sampler",
            ) from e

    # -- reading --------------------------------------------------------------------------------------

    def view(self, ray_trial_id: str) -> TrialView | None:
        rec = self._records.get(ray_trial_id)
        return None if rec is None else view_of(ray_trial_id, rec)

    def views(self) -> list[TrialView]:
        """Every Ray trial this run started, by trial number and seed."""
        views = [view_of(rid, rec) for rid, rec in self._records.items()]
        return sorted(views, key=lambda v: (v.number, v.repeat))

    def number(self, ray_trial_id: str) -> int | None:
        rec = self._records.get(self.members(ray_trial_id)[0])
        return rec.optuna_trial.number if rec else None

    def finished_trials(self) -> list[optuna.trial.FrozenTrial]:
        """This run's Optuna trials (one per configuration) as the study recorded them."""
        numbers = {r.optuna_trial.number for r in self._records.values()}
        return [t for t in self.study.get_trials(deepcopy=False) if t.number in numbers]

    def set_log_dir(self, ray_trial_id: str, path: str) -> None:
        for key in self.members(ray_trial_id):
            if (rec := self._records.get(key)) is not None:
                rec.log_dir = path

    def set_attr(self, ray_trial_id: str, key: str, value: Any) -> None:
        """A user attribute on the trial (on each member of a group, given its Ray trial id)."""
        for k in self.members(ray_trial_id):
            rec = self._records.get(k)
            if rec is not None and rec.optuna_trial.number not in self._told:  # a told trial is final
                self._writes.set_attr(rec.optuna_trial, key, value)

    def flush_due(self) -> None:
        """Write what running trials reported over a second ago (the scheduler calls it every loop step)."""
        self._writes.flush_due()

    def flush(self) -> None:
        """Write everything running trials reported, now."""
        self._writes.flush_all()

    # -- reporting ------------------------------------------------------------------------------------

    def report(self, ray_trial_id: str, result: dict[str, Any]) -> bool:
        """Record one step on the Optuna trial. Returns False if the trial must stop (no usable metric; of a
        group: no member left)."""
        if ray_trial_id in self._fused:
            return self._report_fused(ray_trial_id, result)
        rec = self._records.get(ray_trial_id)
        if rec is None or rec.state is not None:
            return True
        missing = [m for m in self.metrics if result.get(m) is None]
        if missing:
            reported = ", ".join(sorted(k for k in result if not k.startswith(("time_", "timestamp"))))
            rec.failure = f"metric {missing[0]!r} was not reported (reported: {reported})"
            return False
        wrong = [m for m in self.metrics if not is_number(result[m])]
        if wrong:  # "0.5" or True would become 0.5 / 1.0 in the study and nothing in MLflow
            value = result[wrong[0]]
            rec.failure = f"metric {wrong[0]!r} is not a number (got {value!r}, a {type(value).__name__})"
            return False
        step = int(result.get(STEP_KEY, result.get("training_iteration", 0)))
        if rec.last_step is not None and step <= rec.last_step:
            return True
        vector = tuple(float(result[m]) for m in self.metrics)
        rec.last_step = step
        rec.final = bool(result.get(FINAL_KEY))
        rec.latest.update({k: float(v) for k, v in result.items() if is_number(v)})
        if result.get(KEPT_KEY):  # the weights of this step are the ones the trial keeps
            rec.checkpoint_step, rec.checkpoint_metrics = step, measured(result)
        if not all(math.isfinite(v) for v in vector):
            return True
        if self.front_pruner is not None and rec.repeat == 0:
            self.front_pruner.record(rec.optuna_trial.number, step, signed(vector, self.modes))
        if self.multi:
            if rec.repeat == 0:  # Optuna keeps no vector per step: a user attribute per step does
                self._writes.set_attr(rec.optuna_trial, f"{INTERMEDIATE_ATTR}.{step}", list(vector))
            rec.values, rec.best, rec.value_step = vector, vector[0], step
            return True
        value = vector[0]
        if rec.repeat == 0:  # the study's curve of a repeated configuration is its first seed's
            self._writes.report(rec.optuna_trial, value, step)
        if (
            self.value_rule == "last"
            or rec.best is None
            or (value > rec.best if self.mode == "max" else value < rec.best)
        ):
            rec.best, rec.value_step = value, step
        rec.values = (rec.best,)
        return True

    def should_prune(self, ray_trial_id: str) -> bool:
        """Whether the trial must stop now; a group's members are judged one by one (the pruned ones end
        PRUNED now, and ``take_stops`` names them for the worker), and the group stops once none is left."""
        if ray_trial_id in self._fused:
            return self._prune_members(ray_trial_id)
        return self._should_prune(ray_trial_id)

    def _should_prune(self, ray_trial_id: str) -> bool:
        rec = self._records.get(ray_trial_id)
        if rec is None or rec.state is not None or rec.last_step is None or rec.final:
            return False
        if self.front_pruner is not None:
            prune = self.front_pruner.should_prune(rec.optuna_trial.number, rec.last_step)
        else:  # Optuna's own pruner; a trade-off without pareto pruning is never pruned
            prune = not self.multi and rec.optuna_trial.should_prune()
        if prune:
            self.mark_pruned(ray_trial_id)
        return prune

    def record_error(self, trial: Trial) -> None:
        """Keep the last line of a trial's exception; Ray tells schedulers of errors before searchers."""
        line = error_line(trial)
        for key in self.members(trial.trial_id):
            if (rec := self._records.get(key)) is not None and rec.state is None:
                rec.failure, rec.raised = line, True

    def mark_pruned(self, ray_trial_id: str) -> None:
        rec = self._records.get(ray_trial_id)
        if rec is not None and rec.pruned_at is None:
            rec.pruned_at = rec.last_step

    # -- telling --------------------------------------------------------------------------------------

    def complete(self, ray_trial_id: str, result: dict[str, Any] | None, error: bool) -> None:
        if ray_trial_id in self._fused:  # the group's last result was recorded when it came
            for key in self._fused[ray_trial_id]:
                self.complete(key, None, error)
            return
        rec = self._records.get(ray_trial_id)
        if rec is None or rec.state is not None:
            return
        if result and not error:
            self.report(ray_trial_id, result)
        if error or rec.failure:
            self._tell(rec, TrialState.FAIL, reason=rec.failure or "the trial raised an error")
        elif rec.pruned_at is not None:
            self._writes.set_attr(rec.optuna_trial, PRUNED_AT_ATTR, rec.pruned_at)
            self._tell(rec, TrialState.PRUNED)
        elif rec.values is None:
            what = " and ".join(repr(m) for m in self.metrics)
            self._tell(rec, TrialState.FAIL, reason=f"no finite value of {what} was reported")
        else:
            self._tell(rec, TrialState.COMPLETE)

    def finish_open(self, reason: str, as_pruned: bool) -> list[str]:
        """End every trial Ray stopped without telling us: PRUNED at the sweep budget (stopped early, not
        failed, intermediate values kept), FAIL when interrupted (it may be run again)."""
        ended = []
        for ray_id, rec in self._records.items():
            if rec.state is None:
                self._writes.set_attr(rec.optuna_trial, STOPPED_ATTR, reason)
                self._tell(rec, TrialState.PRUNED if as_pruned else TrialState.FAIL, reason=reason)
                ended.append(ray_id)
        for rec in self._records.values():  # configurations whose later seeds never started
            if rec.optuna_trial.number not in self._told:
                self._writes.set_attr(rec.optuna_trial, STOPPED_ATTR, reason)
                self._tell_seeds(rec.seeds, TrialState.PRUNED if as_pruned else TrialState.FAIL, reason)
        return ended

    def _tell(self, rec: TrialRecord, state: TrialState, reason: str = "") -> None:
        """End one Ray trial; tell the study once all the seeds of its configuration (its repeats) have ended."""
        rec.state = state
        if reason and rec.failure is None and state == TrialState.FAIL:
            rec.failure = reason
        if len(rec.seeds) == self.repeats and all(r.state is not None for r in rec.seeds):
            self._tell_seeds(rec.seeds, None, reason)

    def _tell_seeds(self, seeds: list[TrialRecord], missing: TrialState | None, reason: str) -> None:
        """Tell the study how a configuration ended (``verdict.final_state``), with the mean of its seeds'
        values (of each objective, for a trade-off) and its constraints."""
        trial = seeds[0].optuna_trial
        if trial.number in self._told:
            return
        self._told.add(trial.number)
        final, reason = final_state(seeds, self.repeats, missing, reason)
        if self.constraints and final != TrialState.FAIL:
            amounts, unknown = constraint_amounts(self.constraints, seeds)
            if unknown is None:
                for text, amount in amounts.items():
                    trial.set_constraint(text, amount)
                self._writes.set_attr(trial, FEASIBLE_ATTR, all_hold(amounts))
                for r in seeds:
                    r.violations = dict(amounts)
            elif final == TrialState.COMPLETE:
                final, reason = TrialState.FAIL, unknown
                for r in seeds:
                    r.failure = r.failure or unknown
        if reason:
            self._writes.set_attr(trial, FAIL_REASON_ATTR if final == TrialState.FAIL else REASON_ATTR, reason)
        first = seeds[0]  # the seed whose MLflow run and checkpoint `best` and `export` take
        if first.value_step is not None:
            self._writes.set_attr(trial, VALUE_STEP_ATTR, first.value_step)
        if first.checkpoint_step is not None:
            self._writes.set_attr(trial, CHECKPOINT_STEP_ATTR, first.checkpoint_step)
            self._writes.set_attr(trial, CHECKPOINT_METRICS_ATTR, first.checkpoint_metrics)
        if len(seeds) > 1:
            shown = [None if r.values is None else (list(r.values) if self.multi else r.values[0]) for r in seeds]
            self._writes.set_attr(trial, REPEAT_VALUES_ATTR, shown)
        # One value a trial, whatever its state: the value rule's (best or last) over its reports, the mean
        # over its seeds; a PRUNED (or stopped) trial's too, not Optuna's last step. A FAIL has none.
        values = None
        if final in (TrialState.COMPLETE, TrialState.PRUNED):
            valued = [r for r in seeds if r.values is not None]
            values = mean_values(valued) if valued else None
            if final == TrialState.COMPLETE and len(seeds) > 1:
                stds = std_values(seeds)
                self._writes.set_attr(trial, VALUE_STD_ATTR, stds if self.multi else stds[0])
        # Every step in both stores before the study holds the trial finished: the other stores start
        # writing, the study's own writes go meanwhile, then they are waited for.
        for rec in seeds:
            for hook in self.tell_hooks:
                for key, value in hook.before_tell(rec.key).items():
                    self._writes.set_attr(trial, key, value)
        self._writes.flush(trial)
        for hook in self.tell_hooks:
            hook.written()
        tell(self.study, trial, values if self.multi or values is None else values[0], final)
        if final == TrialState.COMPLETE and self.front_pruner is not None:
            self.front_pruner.completed(trial.number)
        self._fail_fast.saw(final, seeds)

    @property
    def failing_fast(self) -> str | None:
        """The error the first ``settings.fail_fast`` trials all raised, once they have (verdict.FailFast)."""
        return self._fail_fast.failing

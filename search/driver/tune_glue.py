"""Ray Tune's side of the bridge: the searcher and the schedulers Ray calls, each handing on to the
``OptunaBridge`` (optuna_bridge.py), which owns the study.

* ``OptunaSearcher`` (a Ray ``Searcher``) asks the study for each new trial and tells it the outcome.
* ``PruningScheduler`` (a Ray ``FIFOScheduler``) records every reported step on the Optuna trial, so the
  dashboard shows intermediate values live, and stops the trial when the study's pruner says so.
* ``ReportingASHA`` does the same recording under Ray's ASHA and marks the trials ASHA stops as pruned.

Both schedulers also keep the trial budget's watch (trial_budget.py) on every step of Ray's loop.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Sequence

from ray.tune.experiment import Trial
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from search.driver.fused_routing import NOT_YET
from search.driver.optuna_bridge import OptunaBridge
from search.driver.trial_budget import BudgetWatch
from search.errors import SpecError
from search.names import FINAL_KEY, STOPPED_ATTR
from search.space.samplers import construct
from search.space.spec import SweepSpec


class OptunaSearcher(Searcher):
    """Ray Tune's searcher, asking the bridge; ``signals`` lists the SIGINT/SIGTERM that came while Ray Tune's
    own handler was not yet installed (between the sweep's set-up and its loop): then no trial is asked."""

    def __init__(self, bridge: OptunaBridge, signals: Sequence[int] = ()) -> None:
        super().__init__(metric=bridge.metric, mode=bridge.mode)
        self.bridge = bridge
        self.signals = signals

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.signals:
            return Searcher.FINISHED
        config = self.bridge.ask(trial_id)
        if config is NOT_YET:
            return None  # Ray asks again on a later step of its loop
        return Searcher.FINISHED if config is None else config

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self.bridge.complete(trial_id, result, error)

    # The search state is the Optuna study in its RDB storage; Ray's own searcher checkpoint is not needed.
    def save(self, checkpoint_path: str) -> None:
        pass

    def restore(self, checkpoint_path: str) -> None:
        pass


class _BridgedScheduler:
    """What both schedulers do beside deciding: keep a failed trial's error line for the bridge (Ray tells
    schedulers of errors before searchers), and stop trials past their budget on every loop step."""

    bridge: OptunaBridge
    watch: BudgetWatch

    def choose_trial_to_run(self, tune_controller: Any) -> Trial | None:
        self.bridge.flush_due()
        for trial in self.watch.overdue(tune_controller.get_live_trials()):
            self.bridge.set_attr(trial.trial_id, STOPPED_ATTR, "trial budget (no report in time)")
            tune_controller.stop_trial(trial)
        return super().choose_trial_to_run(tune_controller)

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        self.bridge.record_error(trial)
        super().on_trial_error(tune_controller, trial)

    def attach(
        self,
        bridge: OptunaBridge,
        trial_limit_s: float | None,
        board: Any = None,
        startup_s: float = BudgetWatch.STARTUP_ALLOWANCE_S,
    ) -> None:
        """Built when the space is validated (its options checked once), attached when the sweep runs;
        ``board`` (a ``StopBoard`` actor) carries the pruned members of fused groups to their workers."""
        self.bridge = bridge
        self.watch = BudgetWatch(trial_limit_s, startup_s)
        self.board = board

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "board"}

    def _tell_worker(self, trial: Trial) -> None:
        """The members of a fused group pruned at this step: the worker drops them at its next one."""
        stops = self.bridge.take_stops(trial.trial_id)
        if stops and getattr(self, "board", None) is not None:
            self.board.stop.remote(trial.trial_id, stops)

    def _recorded(self, trial: Trial, result: dict) -> bool:
        """Record the step on the study; False when the trial must stop (it did not report the metric)."""
        self.watch.saw_result(trial.trial_id, result)
        return self.bridge.report(trial.trial_id, result)


class PruningScheduler(_BridgedScheduler, FIFOScheduler):
    """Records each step on the study and stops the trial when the study's pruner says so."""

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        stop = not self._recorded(trial, result) or self.bridge.should_prune(trial.trial_id)
        self._tell_worker(trial)
        return TrialScheduler.STOP if stop else TrialScheduler.CONTINUE


class ReportingASHA(_BridgedScheduler, AsyncHyperBandScheduler):
    """Ray's ASHA deciding, the study recording: trials ASHA stops end PRUNED, not COMPLETE. It takes
    ASHA's own options (its signature is ASHA's), so they are checked as ASHA's. It keeps its own copies of
    the two it reads (ASHA's attributes for them are private)."""

    @functools.wraps(AsyncHyperBandScheduler.__init__)
    def __init__(self, *args: Any, **options: Any) -> None:
        super().__init__(*args, **options)
        given = inspect.signature(AsyncHyperBandScheduler.__init__).bind(self, *args, **options)
        given.apply_defaults()
        self.time_attr, self.max_t = given.arguments["time_attr"], given.arguments["max_t"]

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        if not self._recorded(trial, result):
            return TrialScheduler.STOP
        decision = super().on_trial_result(tune_controller, trial, result)
        # ASHA also says STOP when a trial reaches max_t: that one finished, it was not pruned.
        if decision == TrialScheduler.STOP and result[self.time_attr] < self.max_t and not result.get(FINAL_KEY):
            self.bridge.mark_pruned(trial.trial_id)
        return decision


def build_scheduler(spec: SweepSpec, source: str, metric: str, mode: str) -> Any:
    """The Ray scheduler, built once with its options checked; the sweep attaches its bridge when it runs.
    fifo: trials run on unless the Optuna pruner stops them; asha: Ray's ASHA, with its own options."""
    if spec.scheduler.name != "asha":
        if spec.scheduler.options:
            key = next(iter(spec.scheduler.options))
            raise SpecError("the fifo scheduler takes no options", source, f"scheduler.{key}")
        return PruningScheduler()
    for reserved in ("metric", "mode"):
        if reserved in spec.scheduler.options:
            raise SpecError("set by the sweep's metric and mode, not here", source, f"scheduler.{reserved}")
    options = {**spec.scheduler.options, "metric": metric, "mode": mode}
    return construct("scheduler", "asha", ReportingASHA, options, source)

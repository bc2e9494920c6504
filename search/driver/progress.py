"""What the terminal shows: one line per finished trial, a status line now and then, and the final table."""

from __future__ import annotations

import time
from typing import Any

from optuna.trial import FrozenTrial, TrialState
from ray.tune import Callback
from ray.tune.experiment import Trial
from rich.console import Console
from rich.table import Table

from search.driver.optuna_bridge import OptunaBridge
from search.driver.trial_records import TrialView
from search.names import REPEAT_VALUES_ATTR, VALUE_STD_ATTR
from search.readback.seed_stats import distinct, half_width, welch_p
from search.readback.shown import fmt
from search.space.pareto import front_of, signed

STATUS_EVERY_S = 10.0


class BacklogLine:
    """What the driver waits for when a trial's steps are still being written to MLflow (a trial that
    reported a million metric values keeps it tens of seconds): the MLflow writer's ``on_wait``."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.last: tuple[float, int] | None = None

    def __call__(self, written: int, sent: int) -> None:
        now = time.monotonic()
        rate = ""
        if self.last is not None and now > self.last[0]:
            rate = f", {(written - self.last[1]) / (now - self.last[0]):,.0f} a second"
        self.last = (now, written)
        self.console.print(
            f"writing to MLflow: {sent - written:,} metric values of {sent:,} still to go{rate}", highlight=False
        )


class ProgressCallback(Callback):
    def __init__(self, bridge: OptunaBridge, console: Console) -> None:
        self.bridge = bridge
        self.console = console
        self.start = time.monotonic()
        self._last_status = self.start
        self._announced: set[str] = set()

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "console"}

    def counts(self) -> dict[str, int]:
        states = [v.state for v in self.bridge.views()]
        return {
            "done": sum(s == TrialState.COMPLETE for s in states),
            "pruned": sum(s == TrialState.PRUNED for s in states),
            "failed": sum(s == TrialState.FAIL for s in states),
            "running": sum(s is None for s in states),
        }

    def best(self) -> float | None:
        values = [v.best for v in self.bridge.views() if v.state == TrialState.COMPLETE and v.feasible is not False]
        if not values:
            return None
        return max(values) if self.bridge.mode == "max" else min(values)

    def front_size(self) -> int:
        """How many of this run's complete, feasible trials no other of them dominates."""
        done = {
            v.number: signed(v.values, self.bridge.modes)
            for v in self.bridge.views()
            if v.state == TrialState.COMPLETE and v.values is not None and v.feasible is not False
        }
        return len(front_of(done))

    def status_line(self) -> str:
        c = self.counts()
        if self.bridge.multi:
            best = f"front of {self.front_size()}"
        else:
            value = self.best()
            best = f"best {self.bridge.metric}={fmt(value) if value is not None else '-'}"
        return (
            f"[{time.monotonic() - self.start:6.0f}s] {c['done']} done, {c['pruned']} pruned, "
            f"{c['failed']} failed, {c['running']} running of {self.bridge.n_trials * self.bridge.repeats}"
            f"  {best}"
        )

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any) -> None:
        for key in self.bridge.members(trial.trial_id) if self.bridge.is_fused(trial.trial_id) else ():
            view = self.bridge.view(key)
            if view is not None and view.state is not None:  # a member that ended while its group goes on
                self._announce(key)

    def on_step_end(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        now = time.monotonic()
        if now - self._last_status >= STATUS_EVERY_S:
            self._last_status = now
            self.console.print(self.status_line(), style="dim", highlight=False)

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        for key in self.bridge.members(trial.trial_id):
            self._announce(key)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        for key in self.bridge.members(trial.trial_id):
            self._announce(key)

    def _announce(self, key: str) -> None:
        v = self.bridge.view(key)
        if v is None or key in self._announced:
            return
        self._announced.add(key)
        state = v.state.name if v.state else "STOPPED"
        params = " ".join(f"{k}={fmt(value)}" for k, value in v.params.items())
        value = shown_values(self.bridge, v)
        if v.feasible is False:
            value += " (infeasible)"
        where = f" at step {v.pruned_at}" if v.state == TrialState.PRUNED and v.pruned_at is not None else ""
        seed = f" seed {v.repeat}" if self.bridge.repeats > 1 else ""
        line = f"trial {v.number:>4}{seed} {state:<8}{where} {value}  {params}"
        if v.state == TrialState.FAIL:
            line += f"\n      {v.failure or 'failed'}" + (f"\n      logs: {v.log_dir}" if v.log_dir else "")
        self.console.print(line, highlight=False, soft_wrap=True)


def shown_values(bridge: OptunaBridge, v: TrialView) -> str:
    """``metric=value`` of each objective: the trial's value as the study holds it (the value rule's, for
    every state that has one); a failed trial has none."""
    if v.values is None or v.state == TrialState.FAIL:
        return ""
    values = (v.best,) if not bridge.multi else v.values
    return " ".join(f"{m}={fmt(x)}" for m, x in zip(bridge.metrics, values))


def rank(trial: FrozenTrial, mode: str) -> tuple[bool, float, int]:
    """Sort key, best first: complete before the rest, then by value; equal values go to the trial that
    got there in fewer steps (the one that reached 100% soonest)."""
    sign = -1 if mode == "max" else 1
    value = sign * trial.value if trial.value is not None else 0.0
    return trial.state != TrialState.COMPLETE, value, len(trial.intermediate_values)


# Figures shown beside the metric when trials report them: a test score next to the validation score
# it was chosen by, and the training loss, so a trial that learned nothing (loss flat at ln 2) shows.
FIGURES = ("test_accuracy", "train_loss", "loss")


def results_table(bridge: OptunaBridge, limit: int = 10) -> Table:
    """This run's configurations, best first; with repeats, each seed's value and mean ± std."""
    trials = sorted(bridge.finished_trials(), key=lambda t: rank(t, bridge.mode))
    names = list(bridge.distributions)
    value_col = f"{bridge.metric} (mean ± std)" if bridge.repeats > 1 else bridge.metric
    table = Table(title=f"best trials of {bridge.study.study_name} ({bridge.metric}, {bridge.mode})")
    first_seed = {v.number: v.latest for v in bridge.views() if v.repeat == 0}
    figures = [f for f in FIGURES if f != bridge.metric and any(f in latest for latest in first_seed.values())]
    repeated = ["± 95% CI", "distinct", "seeds"] if bridge.repeats > 1 else ["steps"]
    columns = ["trial", "state", value_col, *figures, *repeated, *names]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best_seeds = [v for v in complete[0].user_attrs.get(REPEAT_VALUES_ATTR, []) if v is not None] if complete else []
    for col in columns:
        # at 80 columns long names fold onto two lines rather than lose their ends
        table.add_column(col, justify="left" if col == "state" else "right", overflow="fold", no_wrap=col == "state")
    for t in trials[:limit]:
        value = fmt(t.value) if t.value is not None else "-"
        if bridge.repeats > 1:
            if t.value is not None:
                value = f"{t.value:.4f} ± {t.user_attrs.get(VALUE_STD_ATTR, 0.0):.4f}"
            seeds = t.user_attrs.get(REPEAT_VALUES_ATTR, [])
            known = [v for v in seeds if v is not None]
            ci = half_width(known) if t.state == TrialState.COMPLETE else None
            tell = "best" if complete and t is complete[0] else distinct(welch_p(known, best_seeds) if ci else None)
            extra = [
                fmt(ci) if ci is not None else "-",
                tell,
                " ".join(fmt(v) if v is not None else "-" for v in seeds),
            ]
        else:
            extra = [str(max(t.intermediate_values)) if t.intermediate_values else "-"]
        latest = first_seed.get(t.number, {})
        shown = [fmt(latest[f]) if f in latest else "-" for f in figures]
        table.add_row(str(t.number), t.state.name, value, *shown, *extra, *[fmt(t.params.get(n, "")) for n in names])
    return table


def objectives_text(metrics: list[str], modes: list[str]) -> str:
    """``a (max) vs b (min)``: what a trade-off sweep weighs."""
    return " vs ".join(f"{m} ({mode})" for m, mode in zip(metrics, modes))


def _filled(table: Table, columns: list[str], rows: list[list[str]]) -> Table:
    """At 80 columns a long header folds onto two lines; a number does not (each column is at least as wide
    as its widest cell)."""
    for i, col in enumerate(columns):
        width = max((len(r[i]) for r in rows), default=1)
        table.add_column(col, justify="right", overflow="fold", min_width=width)
    for row in rows:
        table.add_row(*row)
    return table


def front_table(bridge: OptunaBridge, front: list[FrozenTrial]) -> Table:
    """A trade-off's result: the Pareto front (feasible trials only), every objective, the parameters."""
    names = list(bridge.distributions)
    table = Table(title=f"Pareto front of {bridge.study.study_name}: {objectives_text(bridge.metrics, bridge.modes)}")
    columns = ["trial", *bridge.metrics, *names]
    first = sorted(front, key=lambda t: (-t.values[0] if bridge.mode == "max" else t.values[0], t.number))
    rows = []
    for t in first:
        rows.append([str(t.number), *[fmt(x) for x in t.values], *[fmt(t.params.get(n, "")) for n in names]])
    return _filled(table, columns, rows)

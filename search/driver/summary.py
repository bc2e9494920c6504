"""What a sweep ended with: its outcome (counts, best or front, failures), the figures and tags its parent
MLflow run keeps, and the table and lines printed at its end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState
from rich.console import Console

from search.driver.optuna_bridge import OptunaBridge
from search.driver.progress import front_table, objectives_text, rank, results_table
from search.errors import shorten
from search.names import RENAMED_TAG, RUN_ID_ATTR, mlflow_name_problem
from search.readback.scored import weights_notice
from search.readback.shown import fmt
from search.space.constraints import all_hold
from search.stores.store import Store

if TYPE_CHECKING:
    from search.driver.plan import Sweep


@dataclass
class SweepOutcome:
    study_name: str
    parent_run_id: str
    counts: dict[str, int]
    best_value: float | None
    best_params: dict[str, Any] | None
    interrupted: bool
    stopped_by_budget: bool = False
    wall_s: float = 0.0
    best_trial: optuna.trial.FrozenTrial | None = None
    front: list[optuna.trial.FrozenTrial] = field(default_factory=list)  # a trade-off's: study.best_trials
    # (trial number, last line of its error, where its logs are) of the failed trials, in order
    failures: list[tuple[int, str, str | None]] = field(default_factory=list)
    ray_dir: str | None = None  # Ray Tune's experiment directory in a local store: trial logs live there
    signal: int = 2  # what interrupted it (SIGINT unless SIGTERM came): the exit code is 128 + this
    stopped: list[int] = field(default_factory=list)  # the trials an interrupt stopped (FAIL): resume reruns them
    failed_fast: str | None = None  # why it stopped, when its first trials all raised one error (fail_fast)
    renamed: dict[str, str] = field(default_factory=dict)  # metrics logged to MLflow under another name
    lost: list[str] = field(default_factory=list)  # writes MLflow refused (the sweep exits 1)

    @property
    def nothing_completed(self) -> bool:
        """Every trial failed: the sweep produced no result, and the command exits non-zero."""
        return not self.interrupted and not self.counts.get("complete") and bool(self.failures)


def opening_line(sweep: Sweep, store: Store) -> str:
    """The sweep's first line: what runs, how, and where it is recorded."""
    spec = sweep.spec
    budget, interval = spec.budget, spec.report_interval_s
    stops = spec.pruner.name if spec.scheduler.name == "fifo" else "asha"
    return (
        f"sweep {spec.name}: {sweep.n_trials} trials of {spec.trainable}, {spec.concurrency} at a time, "
        + (f"trading off {objectives_text(sweep.metrics, sweep.modes)}, " if len(sweep.metrics) > 1 else "")
        + (f"{len(spec.constraints)} constraint(s), " if spec.constraints else "")
        + (f"fused in groups of up to {spec.fuse}, " if spec.fuse > 1 else "")
        + (f"asked in rounds of {sweep.round_size}, " if sweep.round_size else "")
        + f"sampler {spec.sampler.name}, pruning {stops}"
        + (f", sweep budget {budget.sweep:g}s" if budget.sweep else "")
        + (f", trial budget {budget.trial:g}s" if budget.trial else "")
        + (f", reporting every {interval:g}s" if interval else "")
        + f"; store {store.describe()}"
    )


def summarize(bridge: OptunaBridge, parent_run_id: str, interrupted: bool) -> SweepOutcome:
    trials = bridge.finished_trials()
    counts = {
        s.name.lower(): sum(t.state == s for t in trials)
        for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    }
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.values is not None]
    if bridge.constraints:
        counts["infeasible"] = sum(not all_hold(t.constraints) for t in done)
    done = [t for t in done if all_hold(t.constraints)]  # an infeasible trial never counts as best
    outcome = SweepOutcome(
        study_name=bridge.study.study_name,
        parent_run_id=parent_run_id,
        counts=counts,
        best_value=None,
        best_params=None,
        interrupted=interrupted,
        failures=[(v.number, v.failure or "failed", v.log_dir) for v in bridge.views() if v.state == TrialState.FAIL],
    )
    if bridge.multi:
        # The study's own front (feasible trials only), over every run of this sweep.
        outcome.front = sorted(bridge.study.best_trials, key=lambda t: t.number)
        on_front = {t.number for t in outcome.front}
        counts["dominated"] = sum(t.number not in on_front for t in done)
    elif done:
        best = min(done, key=lambda t: rank(t, bridge.mode))
        outcome.best_trial, outcome.best_value, outcome.best_params = best, best.value, dict(best.params)
    return outcome


def parent_metrics(outcome: SweepOutcome) -> dict[str, float]:
    metrics = {f"trials_{k}": float(v) for k, v in outcome.counts.items()}
    if outcome.best_value is not None:
        metrics["best_value"] = outcome.best_value
    if outcome.front:
        metrics["front_size"] = float(len(outcome.front))
    return metrics


def parent_tags(outcome: SweepOutcome) -> dict[str, str]:
    if outcome.front:
        return {
            "front_trial_numbers": ",".join(str(t.number) for t in outcome.front),
            "front_mlflow_run_ids": ",".join(str(t.user_attrs.get(RUN_ID_ATTR, "")) for t in outcome.front),
        }
    best = outcome.best_trial
    if best is None:
        return {}
    return {"best_trial_number": str(best.number), "best_mlflow_run_id": str(best.user_attrs.get(RUN_ID_ATTR, ""))}


def print_summary(sweep: Sweep, store: Store, outcome: SweepOutcome, bridge: OptunaBridge, console: Console) -> None:
    if bridge.multi:
        console.print(front_table(bridge, outcome.front))
        c = outcome.counts
        console.print(
            f"front: {len(outcome.front)} trial(s); of this run {c.get('complete', 0)} complete "
            f"({c.get('dominated', 0)} dominated"
            + (f", {c['infeasible']} infeasible" if "infeasible" in c else "")
            + f"), {c.get('pruned', 0)} pruned, {c.get('fail', 0)} failed",
            highlight=False,
        )
    else:
        console.print(results_table(bridge))
    if outcome.best_params is not None:
        shown = ", ".join(f"{k}={fmt(v)}" for k, v in outcome.best_params.items())
        number = outcome.best_trial.number if outcome.best_trial is not None else "?"
        console.print(
            f"best of this run: {sweep.metric} = {fmt(outcome.best_value)} (trial {number}) with {shown}; "
            f"the whole study's best: hpsearch best {sweep.spec.name}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
        notice = weights_notice(outcome.best_trial, sweep.metrics) if outcome.best_trial is not None else None
        if notice:
            console.print(f"note: {notice}", highlight=False, soft_wrap=True)
    for reported, logged in outcome.renamed.items():
        console.print(
            f"note: metric {shorten(reported)} is logged to MLflow as {logged!r} ({mlflow_name_problem(reported)}; "
            f"the runs' tag {RENAMED_TAG} says so); the study keeps its own name",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    if outcome.ray_dir:
        logs = f"{outcome.ray_dir}/trial-<number>-*/"
        console.print(f"trial logs (stdout, stderr, error): {logs}", highlight=False, soft_wrap=True)
    console.print("watch and compare:", highlight=False)
    console.print(f"  optuna-dashboard {store.shown_storage}", highlight=False, soft_wrap=True)
    if store.artifacts is None:
        console.print(f"  MLflow runs on {store.shown_tracking}", highlight=False, soft_wrap=True)
    else:
        console.print(
            f"  mlflow ui --backend-store-uri {store.mlflow_url} --default-artifact-root {store.artifacts.as_uri()}",
            highlight=False,
            soft_wrap=True,
        )

"""Optuna pruning inside Ray Tune, ASHA recorded as pruning, and the sweep and trial budgets."""

import time

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from search.driver import plan, runner
from search.stores.store import Store

pytestmark = pytest.mark.slow


def children(store: Store, name: str):
    client = MlflowClient(store.mlflow_url)
    runs = client.search_runs([client.get_experiment_by_name(name).experiment_id])
    return client, [r for r in runs if "mlflow.parentRunId" in r.data.tags]


def flaky_ofat(name: str, xs: list[float], **extra) -> dict:
    """Trials in a fixed order (ofat enqueues them), one at a time: the pruner sees the same history each run."""
    return {
        "name": name,
        "trainable": "flaky",
        "config": {"x": 0.3, "steps": 8},
        "space": {"x": {"type": "categorical", "choices": xs}},
        "sampler": {"name": "ofat"},
        "concurrency": 1,
    } | extra


def test_median_pruner_prunes_through_the_bridge(ray_local, write_space, tmp_path, quiet_console):
    store = Store.at(tmp_path / "store")
    space = flaky_ofat(
        "median",
        [0.3, 0.31, 0.32, 0.9, 0.29, 1.0],
        pruner={"name": "median", "n_startup_trials": 3, "n_warmup_steps": 2},
    )
    outcome = runner.run(plan.prepare(str(write_space(space))), store, console=quiet_console)
    assert outcome.counts == {"complete": 4, "pruned": 2, "fail": 0}

    study = optuna.load_study(study_name="median", storage=store.optuna_url)
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert sorted(t.params["x"] for t in pruned) == [0.9, 1.0]
    for t in pruned:  # stopped at the first step the pruner may act on, with its intermediate values
        assert sorted(t.intermediate_values) == [1, 2]
        assert t.user_attrs["pruned_at_step"] == 2
    assert all(len(t.intermediate_values) == 8 for t in complete)

    client, runs = children(store, "median")
    by_x = {r.data.params["x"]: r for r in runs}
    for x in ("0.9", "1.0"):
        run = by_x[x]
        assert run.info.status == "KILLED" and run.data.tags["pruned"] == "true"
        assert run.data.tags["pruned_at_step"] == "2"
        assert [m.step for m in client.get_metric_history(run.info.run_id, "score")] == [1, 2]
    assert {by_x[x].info.status for x in ("0.3", "0.31", "0.32", "0.29")} == {"FINISHED"}


def test_a_trial_is_never_pruned_at_its_final_report(ray_local, write_space, tmp_path, quiet_console):
    # x = 0.9 is far below the median, but step 2, the first the pruner may act on, is its last: it trained
    # fully, so it ends COMPLETE with its value (the trainable said final=True) instead of PRUNED.
    store = Store.at(tmp_path / "store")
    space = flaky_ofat(
        "final", [0.3, 0.31, 0.32, 0.9], pruner={"name": "median", "n_startup_trials": 3, "n_warmup_steps": 2}
    )
    space["config"]["steps"] = 2
    outcome = runner.run(plan.prepare(str(write_space(space))), store, console=quiet_console)
    assert outcome.counts == {"complete": 4, "pruned": 0, "fail": 0}
    study = optuna.load_study(study_name="final", storage=store.optuna_url)
    worst = next(t for t in study.trials if t.params["x"] == 0.9)
    assert sorted(worst.intermediate_values) == [1, 2] and worst.value == max(worst.intermediate_values.values())


@pytest.mark.campaign
def test_median_pruner_on_addition_prunes_slow_learning_rates(ray_local, write_space, tmp_path, quiet_console):
    store = Store.at(tmp_path / "store")
    space = {
        "name": "addition-median",
        "trainable": "addition-cnn",
        "config": {"epochs": 6, "embed_dim": 8, "channels": 16, "lr": 5e-3},
        "space": {"lr": {"type": "categorical", "choices": [5e-3, 3e-3, 1e-5, 2e-5]}},
        "sampler": {"name": "ofat"},
        "concurrency": 1,
        "pruner": {"name": "median", "n_startup_trials": 2, "n_warmup_steps": 2},  # epochs count from 1
    }
    runner.run(plan.prepare(str(write_space(space))), store, console=quiet_console)
    study = optuna.load_study(study_name="addition-median", storage=store.optuna_url)
    states = {t.params["lr"]: (t.state, len(t.intermediate_values)) for t in study.trials}
    assert states[5e-3] == (TrialState.COMPLETE, 6) and states[3e-3] == (TrialState.COMPLETE, 6)
    assert states[1e-5] == (TrialState.PRUNED, 2) and states[2e-5] == (TrialState.PRUNED, 2)


def test_asha_stops_are_recorded_as_pruned_not_complete(ray_local, write_space, tmp_path, quiet_console):
    store = Store.at(tmp_path / "store")
    space = flaky_ofat(
        "asha",
        [0.3, 0.9, 0.31, 1.0, 0.32, 0.95],
        scheduler={"name": "asha", "grace_period": 1, "max_t": 8, "reduction_factor": 2},
    )
    runner.run(plan.prepare(str(write_space(space))), store, console=quiet_console)
    study = optuna.load_study(study_name="asha", storage=store.optuna_url)
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert pruned and complete
    assert all(len(t.intermediate_values) < 8 for t in pruned)
    assert all(len(t.intermediate_values) == 8 for t in complete)  # no half-trained trial told COMPLETE
    assert {t.params["x"] for t in pruned} >= {0.9, 1.0}


def test_sweep_budget_ends_the_sweep_on_time_and_closes_everything(ray_local, flaky_space, tmp_path, quiet_console):
    store = Store.at(tmp_path / "store")
    space = flaky_space("budget", {"steps": 1000, "sleep": 0.1}, trials=10, concurrency=2, budget={"sweep": "12s"})
    outcome = runner.run(plan.prepare(str(space)), store, console=quiet_console)
    assert outcome.stopped_by_budget and not outcome.interrupted
    # Not a time window a loaded machine can miss: not before the budget, and long before its 10 trials of
    # 100 s each could have ended by themselves.
    assert 12 <= outcome.wall_s < 60

    study = optuna.load_study(study_name="budget", storage=store.optuna_url)
    assert TrialState.RUNNING not in {t.state for t in study.trials}
    stopped = [t for t in study.trials if t.user_attrs.get("stopped") == "sweep budget"]
    assert [t.state for t in stopped] == [TrialState.PRUNED] * 2  # stopped, not failed
    assert all(len(t.intermediate_values) >= 1 for t in stopped)  # they keep what they reported

    _, runs = children(store, "budget")
    assert {r.info.status for r in runs} == {"KILLED"}
    assert all(r.data.tags["stopped"] == "sweep budget" for r in runs)


def test_trial_budget_with_time_reports(ray_local, write_space, tmp_path, quiet_console):
    store = Store.at(tmp_path / "store")
    space = {
        "name": "trial-budget",
        "trainable": "addition-cnn",
        "config": {"epochs": 100000, "embed_dim": 8, "channels": 8, "lr": 3e-3},
        "space": {"batch_size": {"type": "categorical", "choices": [32, 512]}},
        "sampler": {"name": "grid"},
        "concurrency": 2,
        "budget": {"trial": "6s"},
        "report_interval": "2s",
    }
    sweep = plan.prepare(str(write_space(space)))
    assert sweep.spec.reports_by_time
    runner.run(sweep, store, console=quiet_console)
    study = optuna.load_study(study_name="trial-budget", storage=store.optuna_url)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    for t in study.trials:
        steps = sorted(t.intermediate_values)
        assert steps[-1] <= 6 + 2  # stopped within one report interval of the limit
        # every report on the clock is at a multiple of the interval (the README's promise); only a final
        # report made off the clock, at an epoch's end, may fall between
        assert all(s % 2 == 0 for s in steps[:-1]) and len(steps) >= 2
        assert t.value == max(t.intermediate_values.values())  # the best within the budget
        # both batch sizes report at the same times, so a pruner compares them fairly
    common = set(study.trials[0].intermediate_values) & set(study.trials[1].intermediate_values)
    assert len(common) >= 1
    client, runs = children(store, "trial-budget")
    for run in runs:  # the trainable stopped itself at the budget and still reported its summary
        assert "param_count" in run.data.metrics and "seconds_per_epoch" in run.data.metrics
        epochs = [m.value for m in client.get_metric_history(run.info.run_id, "epoch")]
        assert epochs == sorted(epochs)
    by_batch = {r.data.params["batch_size"]: r for r in runs}
    small = client.get_metric_history(by_batch["32"].info.run_id, "epoch")[-1].value
    large = client.get_metric_history(by_batch["512"].info.run_id, "epoch")[-1].value
    assert large > small  # the large batch saw more epochs in the same time


def test_trial_budget_stops_a_trainable_that_ignores_it(ray_local, flaky_space, tmp_path, quiet_console):
    store = Store.at(tmp_path / "store")
    config = {"steps": 100, "sleep": 0.25}
    space = flaky_space("ignores-budget", config, trials=1, budget={"trial": "2s"}, report="epoch")
    runner.run(plan.prepare(str(space)), store, console=quiet_console)
    trial = optuna.load_study(study_name="ignores-budget", storage=store.optuna_url).trials[0]
    assert trial.state == TrialState.COMPLETE
    assert 6 <= len(trial.intermediate_values) <= 2 / 0.25 + 2  # one report past the limit at most
    assert trial.value == max(trial.intermediate_values.values())


def test_the_trial_budget_holds_for_a_trial_that_stops_reporting(ray_local, write_space, tmp_path, quiet_console):
    store = Store.at(tmp_path / "store")
    space = {
        "name": "hung",
        "trainable": "flaky",
        "config": {"steps": 5, "hang_after": 1},
        "space": {"x": {"type": "categorical", "choices": [0.3]}},
        "sampler": {"name": "grid"},
        "budget": {"trial": "3s"},
        "report": "epoch",
    }
    started = time.monotonic()
    outcome = runner.run(plan.prepare(str(write_space(space))), store, console=quiet_console)
    assert time.monotonic() - started < 60  # not the 90 s the trainable hangs for
    assert outcome.counts == {"complete": 1, "pruned": 0, "fail": 0}
    trial = optuna.load_study(study_name="hung", storage=store.optuna_url).trials[0]
    assert list(trial.intermediate_values) == [1] and trial.value == trial.intermediate_values[1]
    assert trial.user_attrs["stopped"] == "trial budget (no report in time)"

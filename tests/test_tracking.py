"""The MLflow callback alone: a temporary SQLite MLflow store, an in-memory study, stand-in Ray trials."""

import json
from types import SimpleNamespace

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from search.driver.bridge_settings import BridgeSettings
from search.driver.optuna_bridge import OptunaBridge
from search.driver.tracking import MlflowTrialCallback, Tracking
from search.stores.mlflow_writer import InlineWriter, MlflowWriter
from search.stores.write_behind import Metric


@pytest.fixture(params=["process", "inline"])
def setup(request, tmp_path):
    """The callback with its runs written by the writer process (as a sweep does) and inline."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    writer = MlflowWriter(uri) if request.param == "process" else InlineWriter(uri)
    tracking = Tracking(writer, tmp_path / "artifacts")
    experiment = tracking.experiment_id("unit")
    parent = tracking.start_parent(experiment, {"name": "unit", "trainable": "flaky"}, "unit", "unit-run")
    pruner = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    study = optuna.create_study(study_name="unit", direction="maximize", pruner=pruner)
    bridge = OptunaBridge(study, BridgeSettings({"x": FloatDistribution(0, 1)}, ["score"], ["max"], n_trials=3))
    callback = MlflowTrialCallback(tracking, experiment, parent, bridge)
    yield SimpleNamespace(tracking=tracking, client=MlflowClient(uri), parent=parent, study=study, bridge=bridge,
                           callback=callback, tmp=tmp_path)  # fmt: skip
    writer.close()


def ray_trial(setup, ray_id: str, error: str | None = None) -> SimpleNamespace:
    """What the callback reads of a Ray trial: id, config, directory, checkpoint, error file."""
    path = setup.tmp / f"trial-{ray_id}"
    path.mkdir()
    error_file = None
    if error is not None:
        error_file = path / "error.txt"
        error_file.write_text(f"Traceback (most recent call last):\n  ...\n{error}\n")
    config = setup.bridge.ask(ray_id)
    return SimpleNamespace(trial_id=ray_id, config=config, path=str(path), checkpoint=None, storage=None,
                           error_file=str(error_file) if error_file else None, get_error=lambda: None)  # fmt: skip


def report(setup, trial, step: int, score: float) -> None:
    result = {"score": score, "step": step, "loss": 1.0 - score, "timestamp": 1_700_000_000 + step}
    # what the session and Ray Tune add to every report
    result |= {"elapsed_s": 0.5 * step, "node_id": "n1", "final_report": False, "checkpoint_kept": False}
    result |= {"training_iteration": step, "time_this_iter_s": 0.01, "time_total_s": 0.01 * step, "pid": 7}
    setup.bridge.report(trial.trial_id, result)
    setup.callback.on_trial_result(0, [], trial, result)


def run_of(setup, trial):
    setup.callback.writer.sync()  # what the callback asked for is written
    return setup.client.get_run(setup.callback.run_id(trial.trial_id))


def test_a_completed_trial_is_one_finished_child_run_with_params_and_each_step(setup):
    trial = ray_trial(setup, "a")
    setup.callback.on_trial_start(0, [], trial)
    for step, score in enumerate([0.2, 0.5, 0.7], start=1):
        report(setup, trial, step, score)
    setup.bridge.complete("a", None, error=False)
    setup.callback.on_trial_complete(0, [], trial)

    run = run_of(setup, trial)
    assert run.info.status == "FINISHED" and run.info.run_name == "trial-0000"
    assert run.data.tags["mlflow.parentRunId"] == setup.parent
    assert run.data.tags["optuna.trial_number"] == "0" and run.data.tags["optuna.state"] == "COMPLETE"
    assert float(run.data.params["x"]) == pytest.approx(trial.config["x"])
    history = setup.client.get_metric_history(run.info.run_id, "score")
    assert [(m.step, m.value) for m in history] == [(1, 0.2), (2, 0.5), (3, 0.7)]
    # Ray's bookkeeping and the session's are not metrics; the trial's clock is logged, as each step's time
    assert set(run.data.metrics) == {"score", "loss", "elapsed_s"}
    assert [m.value for m in setup.client.get_metric_history(run.info.run_id, "elapsed_s")] == [0.5, 1.0, 1.5]
    assert setup.study.trials[0].user_attrs["mlflow_run_id"] == run.info.run_id


def test_a_runs_parameters_are_written_with_it_before_any_step(setup):
    """They go with the run's creation, so the writer makes them while the trial runs and the wait before the
    study is told (``written``) is for the steps alone."""
    trials = [ray_trial(setup, key) for key in ("a", "b", "c")]
    for trial in trials:
        setup.callback.on_trial_start(0, [], trial)
    for trial in trials:
        run = run_of(setup, trial)  # no step reported, nothing flushed
        assert float(run.data.params["x"]) == pytest.approx(trial.config["x"])
        assert run.info.status == "RUNNING"


def test_a_pruned_trial_ends_killed_with_the_step_it_was_pruned_at(setup):
    good, bad = ray_trial(setup, "a"), ray_trial(setup, "b")
    for trial, scores in ((good, [0.5, 0.6]), (bad, [0.1])):
        setup.callback.on_trial_start(0, [], trial)
        for step, score in enumerate(scores, start=1):
            report(setup, trial, step, score)
            setup.bridge.should_prune(trial.trial_id)
        setup.bridge.complete(trial.trial_id, None, error=False)
        setup.callback.on_trial_complete(0, [], trial)
    run = run_of(setup, bad)
    assert setup.study.trials[1].state == TrialState.PRUNED
    assert run.info.status == "KILLED"
    assert run.data.tags["pruned"] == "true" and run.data.tags["pruned_at_step"] == "1"
    assert run.data.tags["optuna.state"] == "PRUNED"


def test_a_failed_trial_ends_failed_with_its_error_line_and_its_traceback_in_logs(setup):
    trial = ray_trial(setup, "a", error="RuntimeError: flaky trial failed on purpose at x=0.9")
    setup.callback.on_trial_start(0, [], trial)
    report(setup, trial, 1, 0.3)
    setup.callback.on_trial_error(0, [], trial)
    run = run_of(setup, trial)
    assert run.info.status == "FAILED"
    assert run.data.tags["error"] == "RuntimeError: flaky trial failed on purpose at x=0.9"
    logged = [f.path for f in setup.client.list_artifacts(run.info.run_id, "logs")]
    assert logged == ["logs/error.txt"]


def test_runs_ray_stopped_without_a_callback_end_killed_with_the_reason(setup):
    trial = ray_trial(setup, "a")
    setup.callback.on_trial_start(0, [], trial)
    report(setup, trial, 1, 0.3)
    setup.bridge.finish_open("interrupted", as_pruned=False)
    setup.callback.finish_open("interrupted")
    run = run_of(setup, trial)
    assert run.info.status == "KILLED" and run.data.tags["stopped"] == "interrupted"
    assert run.data.tags["optuna.state"] == "FAIL"
    setup.callback.finish_open("again")  # closed once
    assert run_of(setup, trial).data.tags["stopped"] == "interrupted"


DRIVER = """
import os, sys
from rich.console import Console
from search.driver import plan, runner
from search.stores.store import Store

store = Store.at(sys.argv[2])
for _ in range(2):  # a new study, then the same one again (where a lost driver's runs are looked for)
    outcome = runner.run(plan.prepare(sys.argv[1]), store, console=Console(quiet=True))
    assert outcome.counts["complete"] == 1, outcome.counts
print(sorted(m for m in sys.modules if m.split(".")[0] == "mlflow"))
sys.stdout.flush()
os._exit(0)
"""


@pytest.mark.slow
def test_a_sweeps_driver_imports_no_mlflow_and_its_runs_are_whole(flaky_space, tmp_path):
    """MLflow costs the driver about 2 s of CPU to import and open, on a sweep's start: every MLflow call is
    the writer process's (mlflow_writer.py). The runs it made for the driver are all there."""
    import subprocess
    import sys

    space = flaky_space("lean", trials=1)
    store = tmp_path / "store"
    done = subprocess.run([sys.executable, "-c", DRIVER, str(space), str(store)], capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("lean").experiment_id])
    parents = [r for r in runs if r.data.tags.get("hpsearch.role") == "sweep"]
    assert len(parents) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    assert all(r.data.params["trainable"] == "flaky" and r.data.metrics for r in parents)
    assert all([a.path for a in client.list_artifacts(r.info.run_id)] == ["space.yaml"] for r in parents)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") in {p.info.run_id for p in parents}]
    assert len(children) == 2 and all(len(client.get_metric_history(r.info.run_id, "score")) == 3 for r in children)


def test_a_metric_named_as_mlflow_refuses_is_logged_under_a_name_it_takes_and_the_trial_ends_whole(setup):
    """One bad key made MLflow refuse the trial's whole batch: every step lost, the trial left RUNNING."""
    trial = ray_trial(setup, "a")
    setup.callback.on_trial_start(0, [], trial)
    for step, score in enumerate([0.2, 0.5, 0.7], start=1):
        result = {"score": score, "step": step, "acc(%)": 10.0 * step, "../../x": -step, "timestamp": 1_700_000_000}
        setup.bridge.report("a", result)
        setup.callback.on_trial_result(0, [], trial, result)
    setup.bridge.complete("a", None, error=False)
    setup.callback.on_trial_complete(0, [], trial)

    run = run_of(setup, trial)
    assert setup.study.trials[0].state == TrialState.COMPLETE and setup.callback.lost == []
    assert run.info.status == "FINISHED"
    assert [m.value for m in setup.client.get_metric_history(run.info.run_id, "acc___")] == [10.0, 20.0, 30.0]
    assert [m.value for m in setup.client.get_metric_history(run.info.run_id, "__/__/x")] == [-1.0, -2.0, -3.0]
    assert [m.step for m in setup.client.get_metric_history(run.info.run_id, "score")] == [1, 2, 3]
    assert json.loads(run.data.tags["hpsearch.renamed_metrics"]) == {"../../x": "__/__/x", "acc(%)": "acc___"}


def test_a_write_mlflow_refuses_is_kept_as_lost_and_the_study_is_told_all_the_same(setup):
    trial = ray_trial(setup, "a")
    setup.callback.on_trial_start(0, [], trial)
    report(setup, trial, 1, 0.4)
    setup.callback.writes.log("a", metrics=[Metric("bad(%)", 1.0, 1_700_000_000, 1)])  # past the renaming
    setup.bridge.complete("a", None, error=False)
    assert setup.study.trials[0].state == TrialState.COMPLETE and setup.study.trials[0].value == 0.4
    assert len(setup.callback.lost) == 1 and "bad(%)" in setup.callback.lost[0]


@pytest.mark.parametrize("choices", [3, 120, 10_000])
def test_a_parent_runs_parameters_hold_a_small_space_whole_and_a_huge_one_as_one(choices):
    """10,000 branch choices made 40,000 parent parameters: MLflow wrote them for minutes before the first trial."""
    from search.driver.tracking import MAX_SPACE_PARAMS, parent_params

    space = {"branch": {"type": "categorical", "choices": [f"c{i}" for i in range(choices)]}} | {
        f"p{i}": {"type": "float", "low": 0.0, "high": 1.0} for i in range(choices)
    }
    shown = {p.key: p.value for p in parent_params({"name": "s", "config": {"epochs": 3}, "space": space})}
    assert shown["name"] == "s" and shown["config.epochs"] == "3"
    if 3 * choices + 1 <= MAX_SPACE_PARAMS:
        assert shown["space.p1.high"] == "1.0" and "space" not in shown
    else:
        assert len(shown) == 3 and shown["space"].startswith(f"{choices + 1} hyperparameters (")
        assert len(shown["space"]) <= 6000

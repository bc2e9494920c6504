"""Names MLflow refuses: a metric a trainable reports as ``acc(%)`` is logged under a name MLflow takes and
the sweep says so; a write MLflow refuses all the same never leaves a trial RUNNING nor ends the sweep well.
(The space file's own names are refused before anything runs: tests/bad_spaces/.)"""

import json

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from search.driver import plan, runner
from search.errors import TrackingRefusedError
from search.names import mlflow_name, mlflow_name_problem
from search.stores.store import Store

TRAINABLE = """
def train(config, session):
    for step in range(1, 4):
        session.report(step, {"score": config["x"] * step, "acc(%)": 10.0 * step, "loss@epoch": 1.0 / step},
                       final=step == 3)
"""


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("acc(%)", "no '('"),
        ("x" * 251, "251 characters long"),
        ("../../x", "a path leading elsewhere"),
        ("a\nb", "no '\\n'"),
        ("", "it is empty"),
        ("a/", "a path leading elsewhere"),
    ],
)
def test_a_name_mlflow_refuses_is_said_why_and_mapped_to_one_it_takes(name, problem):
    import mlflow.utils.validation as validation

    assert problem in mlflow_name_problem(name)
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException):  # MLflow's own rule agrees: it refuses the name
        validation._validate_metric_name(name)
        validation._validate_length_limit("key", validation.MAX_ENTITY_KEY_LENGTH, name)
    mapped = mlflow_name(name)
    assert mlflow_name_problem(mapped) is None
    validation._validate_metric_name(mapped)
    validation._validate_length_limit("key", validation.MAX_ENTITY_KEY_LENGTH, mapped)


@pytest.mark.parametrize("name", ["accuracy", "val/loss", "epoch time: s", "top-1.acc", "ü"])
def test_a_name_mlflow_takes_is_kept_as_it_is(name):
    assert mlflow_name_problem(name) is None and mlflow_name(name) == name


def test_two_long_names_stay_two():
    assert mlflow_name("x" * 300) != mlflow_name("x" * 301)


def sweep_of(write_space, tmp_path, name: str):
    (tmp_path / "tr.py").write_text(TRAINABLE)
    space = {"name": name, "trainable": f"{tmp_path}/tr.py:train", "metric": "score", "mode": "max",
             "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}}, "trials": 3}  # fmt: skip
    return plan.prepare(str(write_space(space)))


def trials_and_runs(store: Store, name: str):
    study = optuna.load_study(study_name=name, storage=store.optuna_url)
    client = MlflowClient(store.mlflow_url)
    runs = client.search_runs([client.get_experiment_by_name(name).experiment_id])
    return study.trials, [r for r in runs if "mlflow.parentRunId" in r.data.tags], runs, client


@pytest.mark.slow
def test_a_sweep_whose_trainable_reports_names_mlflow_refuses_keeps_every_trial_whole(
    ray_local, write_space, tmp_path, quiet_console
):
    store = Store.at(tmp_path / "store")
    outcome = runner.run(sweep_of(write_space, tmp_path, "renamed"), store, console=quiet_console)
    assert outcome.counts["complete"] == 3 and outcome.renamed == {"acc(%)": "acc___", "loss@epoch": "loss_epoch"}
    trials, children, _, client = trials_and_runs(store, "renamed")
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert len(children) == 3 and {r.info.status for r in children} == {"FINISHED"}
    for run in children:
        assert [m.value for m in client.get_metric_history(run.info.run_id, "acc___")] == [10.0, 20.0, 30.0]
        assert json.loads(run.data.tags["hpsearch.renamed_metrics"]) == outcome.renamed
    said = quiet_console.file.getvalue()
    assert "note: metric 'acc(%)' is logged to MLflow as 'acc___'" in said


@pytest.mark.slow
def test_a_write_mlflow_refuses_fails_the_sweep_and_leaves_no_trial_running(
    ray_local, write_space, tmp_path, quiet_console, monkeypatch
):
    """With the renaming gone (a name rule MLflow changed), every trial is still told and the sweep exits 1."""
    monkeypatch.setattr("search.driver.tracking.mlflow_name", lambda name: name)
    store = Store.at(tmp_path / "store")
    with pytest.raises(TrackingRefusedError, match=r"MLflow refused \d+ write\(s\) .*acc\(%\)") as raised:
        runner.run(sweep_of(write_space, tmp_path, "refused"), store, console=quiet_console)
    assert raised.value.exit_code == 1
    trials, children, runs, _ = trials_and_runs(store, "refused")
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert all(r.info.status != "RUNNING" for r in runs)
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert parent.info.status == "FAILED"

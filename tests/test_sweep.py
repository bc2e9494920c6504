"""Real sweeps: Ray Tune locally, Optuna in SQLite, MLflow in SQLite. Small sizes, real outcomes."""

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from search.driver import plan, runner
from search.stores.store import Store

pytestmark = pytest.mark.slow


def addition_space(**overrides):
    space = {
        "name": "tiny-addition",
        "trainable": "addition-cnn",
        "config": {"epochs": 3, "embed_dim": 8, "channels": 8},
        "space": {"lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
        "sampler": {"name": "random", "seed": 1},
        "trials": 4,
        "concurrency": 2,
    }
    return space | overrides


def child_runs(store: Store, name: str):
    client = MlflowClient(store.mlflow_url)
    exp = client.get_experiment_by_name(name)
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("hpsearch.role") == "sweep"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children


def test_four_trial_sweep_fills_all_three_stores(ray_local, write_space, tmp_path, quiet_console):
    store = Store.at(tmp_path / "store")
    sweep = plan.prepare(str(write_space(addition_space())))
    outcome = runner.run(sweep, store, console=quiet_console)

    study = optuna.load_study(study_name="tiny-addition", storage=store.optuna_url)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    assert all(len(t.intermediate_values) == 3 for t in study.trials)  # one point per epoch, live in the dashboard
    assert outcome.counts["complete"] == 4 and not outcome.interrupted
    # Ray's own experiment files never hold the study's storage URL (on a server it carries a password)
    for path in (store.root / "ray").rglob("*"):
        assert not path.is_file() or b"optuna.db" not in path.read_bytes(), path

    client, parents, children = child_runs(store, "tiny-addition")
    assert len(parents) == 1 and len(children) == 4
    parent_id = parents[0].info.run_id
    assert all(r.data.tags["mlflow.parentRunId"] == parent_id for r in children)
    assert {r.info.status for r in children} == {"FINISHED"} and parents[0].info.status == "FINISHED"
    # one identity across the three systems
    by_number = {int(r.data.tags["optuna.trial_number"]): r for r in children}
    for t in study.trials:
        run = by_number[t.number]
        assert t.user_attrs["mlflow_run_id"] == run.info.run_id
        assert t.user_attrs["ray_trial_id"] == run.data.tags["ray.trial_id"]
        assert float(run.data.params["lr"]) == pytest.approx(t.params["lr"])
        history = client.get_metric_history(run.info.run_id, "exact_match")
        assert [m.step for m in history] == [1, 2, 3]  # steps count from 1
        assert t.value == pytest.approx(max(m.value for m in history))
    # the space file is on the parent run
    assert "space.yaml" in [a.path for a in client.list_artifacts(parent_id)]
    assert parents[0].data.params["config.epochs"] == "3"


def test_failing_trial_is_fail_and_failed_and_the_sweep_goes_on(ray_local, write_space, tmp_path, quiet_console):
    store = Store.at(tmp_path / "store")
    space = {
        "name": "flaky",
        "trainable": "flaky",
        "config": {"fail_above": 0.5},
        "space": {"x": {"type": "categorical", "choices": [0.1, 0.9, 0.3]}},
        "sampler": {"name": "grid"},
        "concurrency": 1,
    }
    outcome = runner.run(plan.prepare(str(write_space(space))), store, console=quiet_console)
    assert outcome.counts == {"complete": 2, "pruned": 0, "fail": 1}

    study = optuna.load_study(study_name="flaky", storage=store.optuna_url)
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert len(failed) == 1 and failed[0].params["x"] == 0.9
    assert "failed on purpose" in failed[0].user_attrs["fail_reason"]
    assert study.best_params["x"] == 0.3

    _, _, children = child_runs(store, "flaky")
    statuses = {r.data.params["x"]: r.info.status for r in children}
    assert statuses == {"0.1": "FINISHED", "0.9": "FAILED", "0.3": "FINISHED"}
    failed_run = next(r for r in children if r.info.status == "FAILED")
    assert "failed on purpose" in failed_run.data.tags["error"]


def test_missing_metric_fails_the_trial_with_the_reason(ray_local, write_space, tmp_path, quiet_console):
    store = Store.at(tmp_path / "store")
    space = {
        "name": "wrong-metric",
        "trainable": "flaky",
        "config": {"metric_name": "accuracy"},
        "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        "trials": 1,
    }
    outcome = runner.run(plan.prepare(str(write_space(space))), store, console=quiet_console)
    assert outcome.counts["fail"] == 1
    trial = optuna.load_study(study_name="wrong-metric", storage=store.optuna_url).trials[0]
    assert "metric 'score' was not reported" in trial.user_attrs["fail_reason"]
    assert "accuracy" in trial.user_attrs["fail_reason"]


def test_rerunning_a_sweep_continues_its_study_and_new_archives_it(ray_local, write_space, tmp_path, quiet_console):
    store = Store.at(tmp_path / "store")
    path = str(write_space(addition_space(trials=2, config={"epochs": 1, "embed_dim": 4, "channels": 4})))
    runner.run(plan.prepare(path), store, console=quiet_console)
    runner.run(plan.prepare(path), store, console=quiet_console)
    study = optuna.load_study(study_name="tiny-addition", storage=store.optuna_url)
    assert [t.number for t in study.trials] == [0, 1, 2, 3]
    _, parents, children = child_runs(store, "tiny-addition")
    assert len(parents) == 2 and len(children) == 4

    runner.run(plan.prepare(path), store, new=True, console=quiet_console)
    names = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(store.optuna_url)}
    assert names["tiny-addition"] == 2
    archived = [n for n in names if n.startswith("tiny-addition@")]
    assert len(archived) == 1 and names[archived[0]] == 4  # nothing a user ran is lost


def test_ofat_runs_each_factor_around_the_baseline(ray_local, write_space, tmp_path, quiet_console):
    store = Store.at(tmp_path / "store")
    space = {
        "name": "ofat",
        "trainable": "flaky",
        "config": {"x": 0.5, "steps": 1},
        "space": {
            "x": {"type": "categorical", "choices": [0.1, 0.5, 0.9]},
            "steps": {"type": "int", "low": 1, "high": 2},
        },
        "sampler": {"name": "ofat"},
    }
    sweep = plan.prepare(str(write_space(space)))
    assert sweep.n_trials == 4  # baseline, x=0.1, x=0.9, steps=2
    runner.run(sweep, store, console=quiet_console)
    study = optuna.load_study(study_name="ofat", storage=store.optuna_url)
    points = sorted((t.params["x"], t.params["steps"]) for t in study.trials)
    assert points == [(0.1, 1), (0.5, 1), (0.5, 2), (0.9, 1)]


def test_repeats_run_each_configuration_with_several_seeds(ray_local, write_space, tmp_path):
    import io
    import statistics

    from rich.console import Console

    store = Store.at(tmp_path / "store")
    space = addition_space(
        name="repeats",
        config={"epochs": 2, "embed_dim": 4, "channels": 4, "seed": 10},
        space={"lr": {"type": "categorical", "choices": [1e-3, 5e-3]}},
        sampler={"name": "grid"},
        trials=None,
        repeats=3,
    )
    del space["trials"]
    out = io.StringIO()
    outcome = runner.run(plan.prepare(str(write_space(space))), store, console=Console(file=out, width=200))
    assert outcome.counts["complete"] == 2

    study = optuna.load_study(study_name="repeats", storage=store.optuna_url)
    assert len(study.trials) == 2
    for t in study.trials:
        values = t.user_attrs["repeat_values"]
        assert len(values) == 3 and len(set(values)) > 1  # three different seeds
        assert t.value == pytest.approx(statistics.fmean(values))
        assert t.user_attrs["value_std"] == pytest.approx(statistics.stdev(values))

    _, _, runs = child_runs(store, "repeats")
    assert len(runs) == 6
    by_trial: dict[str, set] = {}
    for r in runs:
        by_trial.setdefault(r.data.tags["optuna.trial_number"], set()).add(
            (r.data.tags["repeat"], r.data.params["seed"])
        )
    assert all(seeds == {("0", "10"), ("1", "11"), ("2", "12")} for seeds in by_trial.values())
    table = out.getvalue()
    assert "mean ± std" in table and table.count(" ± ") >= 2


def test_repeats_wait_for_every_seed_before_telling_the_study(ray_local, write_space, tmp_path, quiet_console):
    """Seeds 0 and 1 end before seed 2 is even started (one trial at a time): the study must wait."""
    store = Store.at(tmp_path / "store")
    space = {
        "name": "repeats-serial",
        "trainable": "flaky",
        "config": {"steps": 1},
        "space": {"x": {"type": "categorical", "choices": [0.1, 0.3]}},
        "sampler": {"name": "grid"},
        "repeats": 3,
        "concurrency": 1,
    }
    outcome = runner.run(plan.prepare(str(write_space(space))), store, console=quiet_console)
    assert outcome.counts == {"complete": 2, "pruned": 0, "fail": 0}
    study = optuna.load_study(study_name="repeats-serial", storage=store.optuna_url)
    assert [len(t.user_attrs["repeat_values"]) for t in study.trials] == [3, 3]
    assert all(f"mlflow_run_id.seed{k}" in t.user_attrs for t in study.trials for k in range(3))


@pytest.mark.campaign
def test_a_seeded_sweep_run_again_samples_new_points(ray_local, flaky_space, tmp_path, quiet_console):
    store = Store.at(tmp_path / "store")
    path = str(flaky_space("again", {"steps": 1}, sampler={"name": "random", "seed": 7}, trials=3, concurrency=1))
    runner.run(plan.prepare(path), store, console=quiet_console)
    runner.run(plan.prepare(path), store, console=quiet_console)  # the same file, the same seed
    study = optuna.load_study(study_name="again", storage=store.optuna_url)
    xs = [t.params["x"] for t in study.trials]
    assert len(xs) == 6 and len(set(xs)) == 6  # no finished point drawn twice

"""hpsearch compare: one table from the study and MLflow, with repeats as mean ± std rows."""

import csv
import io

import optuna
import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from search.commands.cli import app
from search.driver import plan, runner
from search.stores.store import Store

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def store(tmp_path_factory, ray_local):
    root = tmp_path_factory.mktemp("compare")
    store = Store.at(root / "store")
    for name, choices, repeats in (("near", [0.25, 0.35], 3), ("far", [0.9], 1)):
        path = root / f"{name}.yaml"
        space = {
            "name": name,
            "trainable": "flaky",
            "config": {"steps": 2},
            "space": {"x": {"type": "categorical", "choices": choices}},
            "sampler": {"name": "grid"},
            "repeats": repeats,
            "concurrency": 2,
        }
        path.write_text(yaml.safe_dump(space))
        runner.run(plan.prepare(str(path)), store, console=Console(file=io.StringIO()))
    # two hyperparameters, only x matters (fail_above is never reached)
    path = root / "two.yaml"
    space = {
        "name": "two",
        "trainable": "flaky",
        "config": {"steps": 1},
        "space": {
            "x": {"type": "categorical", "choices": [0.1, 0.3, 0.6, 0.9]},
            "fail_above": {"type": "categorical", "choices": [2.0, 3.0]},
        },
        "sampler": {"name": "grid"},
        "concurrency": 2,
    }
    path.write_text(yaml.safe_dump(space))
    runner.run(plan.prepare(str(path)), store, console=Console(file=io.StringIO()))
    return store


def test_compare_with_repeats_gives_mean_std_and_each_seed(store):
    result = CliRunner().invoke(app, ["compare", "near", "--store", str(store.root), "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["x"] for r in rows] == ["0.25", "0.35"] or [r["x"] for r in rows] == ["0.35", "0.25"]
    for r in rows:
        assert r["n"] == "3" and len(r["seeds"].split()) == 3
        assert float(r["± std"]) == pytest.approx(0.0)  # flaky's score does not depend on the seed
        assert float(r["± 95% CI"]) == pytest.approx(0.0)
        assert float(r["score"]) == pytest.approx(-((float(r["x"]) - 0.3) ** 2))  # best of its two steps
    # x = 0.25 and 0.35 lie as far from 0.3: the same score on every seed, so they cannot be told apart
    assert [r["distinct"] for r in rows] == ["best", "no"]
    assert [float(r["p vs best"] or "nan") for r in rows][1] == 1.0


def test_report_draws_the_seeds_error_bars(store):
    result = CliRunner().invoke(app, ["report", "near", "--store", str(store.root)], terminal_width=200)
    assert result.exit_code == 0, result.output
    out_dir = store.root / "reports" / "near"
    assert (out_dir / "seeds.png").stat().st_size > 0 and "error_y" in (out_dir / "seeds.html").read_text()


def test_compare_two_sweeps_in_one_table_sorted_by_the_metric(store):
    result = CliRunner().invoke(app, ["compare", "near", "far", "--store", str(store.root), "--format", "markdown"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("| sweep | trial | state | score |")
    sweeps = [line.split("|")[1].strip() for line in lines[2:]]
    assert sweeps == ["near", "near", "far"]  # far (x = 0.9) scores worst


def test_compare_unknown_sweep_and_bad_format_are_clear(store, tmp_path):
    result = CliRunner().invoke(app, ["compare", "nope", "--store", str(store.root)])
    assert result.exit_code == 2 and "unknown sweep 'nope'" in result.stderr and "near" in result.stderr
    result = CliRunner().invoke(app, ["compare", "near", "--store", str(store.root), "--format", "xls"])
    assert result.exit_code == 2 and "--format" in result.stderr
    result = CliRunner().invoke(app, ["compare", "near", "--store", str(tmp_path / "none")])
    assert result.exit_code == 2 and "no sweeps in" in result.stderr


def test_report_writes_plots_and_logs_them_on_the_parent_run(store):
    from mlflow.tracking import MlflowClient

    result = CliRunner().invoke(app, ["report", "two", "--store", str(store.root)], terminal_width=200)
    assert result.exit_code == 0, result.output
    out_dir = store.root / "reports" / "two"
    names = sorted(p.name for p in out_dir.iterdir())
    for plot in ("optimization_history", "slice", "parallel_coordinate", "intermediate_values", "contour"):
        assert f"{plot}.png" in names and f"{plot}.html" in names
        assert (out_dir / f"{plot}.png").read_bytes()[:4] == b"\x89PNG"
        html = (out_dir / f"{plot}.html").read_text()
        assert 'src="plotly.min.js"' in html and "cdn.plot.ly" not in html  # shows offline
    assert (out_dir / "plotly.min.js").stat().st_size > 1_000_000  # the one local copy the pages load
    importances = dict(line.split("\t") for line in (out_dir / "importances.txt").read_text().splitlines())
    assert float(importances["x"]) > 0.9  # the parameter that matters dominates
    client = MlflowClient(store.mlflow_url)
    exp = client.get_experiment_by_name("two")
    parent = client.search_runs([exp.experiment_id], "tags.`hpsearch.role` = 'sweep'")[0]
    logged = [a.path for a in client.list_artifacts(parent.info.run_id, "report")]
    assert "report/contour.html" in logged and "report/slice.png" in logged and "report/plotly.min.js" in logged
    assert parent.data.metrics["importance.x"] > 0.9


def test_report_on_an_unknown_sweep_is_clear(store):
    result = CliRunner().invoke(app, ["report", "nope", "--store", str(store.root)])
    assert result.exit_code == 2 and "unknown sweep 'nope'" in result.stderr


def test_report_refuses_a_study_name_that_leads_out_of_the_store(tmp_path):
    from search.stores.store import Store

    store = Store.at(tmp_path / "store")
    store.create()
    study = optuna.create_study(study_name="../../escaped", storage=store.optuna_url)
    for x in (0.1, 0.2):  # enough trials for a report
        study.enqueue_trial({"x": x})
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    result = CliRunner().invoke(app, ["report", "../../escaped", "--store", str(store.root)])
    assert result.exit_code == 2 and "cannot name a file in the store" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"] and not (store.root / "reports").exists()

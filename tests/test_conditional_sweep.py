"""A conditional space swept for real (Ray, SQLite, MLflow): a parameter a trial's own choices do not make
active is absent from the study, its MLflow run, the config the trainable got, the tables, `best` and
`train --from`; a grid trade-off with repeats enumerates the tree. The rules alone: test_conditions.py."""

from json import loads as json_loads
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from typer.testing import CliRunner

from search.commands.cli import app
from search.driver import plan, runner
from search.stores.store import Store

pytestmark = pytest.mark.slow
BRANCHY = str(Path(__file__).parent / "plugins" / "branchy.py") + ":train"

SPACE = {
    "optimizer": {"type": "categorical", "choices": ["adam", "sgd"]},
    "momentum": {"type": "float", "low": 0.5, "high": 0.9, "step": 0.4, "when": {"optimizer": "sgd"}},
    "model": {
        "type": "categorical",
        "choices": {"alexnet": {}, "resnet": {"depth": {"type": "categorical", "choices": [18, 101]}}},
    },
}


def active(params: dict) -> set:
    return (
        {"optimizer", "model"}
        | ({"momentum"} if params["optimizer"] == "sgd" else set())
        | ({"depth"} if params["model"] == "resnet" else set())
    )


def runs_by_trial(store: Store, name: str) -> dict[int, list]:
    client = MlflowClient(store.mlflow_url)
    runs = client.search_runs([client.get_experiment_by_name(name).experiment_id])
    out: dict[int, list] = {}
    for r in runs:
        if "optuna.trial_number" in r.data.tags:
            out.setdefault(int(r.data.tags["optuna.trial_number"]), []).append(r)
    return out


def test_inactive_parameters_are_absent_everywhere(ray_local, write_space, tmp_path, quiet_console):
    store = Store.at(tmp_path / "store")
    raw = {"name": "cond", "trainable": BRANCHY, "metric": "score", "mode": "max", "config": {"steps": 2},
           "space": SPACE, "sampler": {"name": "tpe", "seed": 3}, "trials": 6, "concurrency": 2}  # fmt: skip
    outcome = runner.run(plan.prepare(str(write_space(raw))), store, console=quiet_console)
    assert outcome.counts["complete"] == 6

    study = optuna.load_study(study_name="cond", storage=store.optuna_url)
    assert {t.state for t in study.trials} == {TrialState.COMPLETE}
    assert len({(t.params["optimizer"], t.params["model"]) for t in study.trials}) >= 2
    runs = runs_by_trial(store, "cond")
    for t in study.trials:
        assert set(t.params) == active(t.params), t.params
        (run,) = runs[t.number]
        assert set(run.data.params) - {"steps"} == set(t.params)  # MLflow: the active ones only
        assert run.data.metrics["n_keys"] == len(t.params)  # the trainable's config held no other

    compare = CliRunner().invoke(app, ["compare", "cond", "--store", str(store.root), "--format", "csv"])
    rows = [line.split(",") for line in compare.stdout.strip().splitlines()]
    header, body = rows[0], rows[1:]
    assert len(body) == 6
    for row in body:
        cells = dict(zip(header, row))
        blank = {k for k in ("momentum", "depth") if k in cells and cells[k] == ""}
        assert blank == {"momentum", "depth"} - active(cells)  # blank where inactive, a value where set

    by = CliRunner().invoke(app, ["compare", "cond", "--store", str(store.root), "--format", "csv", "--by", "model"])
    models = [dict(zip(header, line.split(",")))["model"] for line in by.stdout.strip().splitlines()[1:]]
    assert sorted(models, key=models.index) == models and len(models) == 6  # each branch's rows together
    table = CliRunner().invoke(app, ["compare", "cond", "--store", str(store.root), "--by", "model"])
    assert "by model: score of the complete trials" in table.stdout
    assert "complete" in table.stdout.split("by model:")[1]  # the count the mean is over, beside all trials
    assert all(f" {m} " in table.stdout for m in set(models))
    for row in body:  # piped, a table writes each number whole on its line (not folded at 80 columns)
        assert f" {float(dict(zip(header, row))['score']):.6g} " in table.stdout

    best = CliRunner().invoke(app, ["best", "cond", "--store", str(store.root), "--format", "json"])
    chosen = json_loads(best.stdout)
    assert set(chosen["config"]) - {"steps"} == active(chosen["config"])
    trained = CliRunner().invoke(app, ["train", "--from", "cond", "--store", str(store.root)])
    assert trained.exit_code == 0, trained.output
    assert f"n_keys={len(active(chosen['config']))}" in trained.stdout  # retrained with the active ones only

    # the same sweep run again is the same search: the flat form it recorded reads back alike
    again = runner.run(plan.prepare(str(write_space(raw)), trials=2), store, console=quiet_console)
    assert again.counts["complete"] == 2
    assert len(optuna.load_study(study_name="cond", storage=store.optuna_url).trials) == 8


@pytest.mark.campaign
def test_a_grid_trade_off_with_repeats_enumerates_the_tree(ray_local, write_space, tmp_path, quiet_console):
    store = Store.at(tmp_path / "store")
    raw = {"name": "cond-grid", "trainable": BRANCHY, "metric": ["score", "n_keys"], "mode": ["max", "min"],
           "space": SPACE, "sampler": {"name": "grid"}, "repeats": 2, "concurrency": 2}  # fmt: skip
    sweep = plan.prepare(str(write_space(raw)))
    assert sweep.n_trials == 9  # (adam + sgd x 2 momenta) x (alexnet + resnet x 2 depths)
    runner.run(sweep, store, console=quiet_console)
    study = optuna.load_study(study_name="cond-grid", storage=store.optuna_url)
    points = [t.params for t in study.trials]
    assert len(points) == 9 and all(set(p) == active(p) for p in points)
    assert len({tuple(sorted(p.items())) for p in points}) == 9  # each point once
    assert all(t.state == TrialState.COMPLETE and len(t.values) == 2 for t in study.trials)
    assert all(len(runs) == 2 for runs in runs_by_trial(store, "cond-grid").values())  # two seeds each
    front = {(t.params["optimizer"], t.params["model"]) for t in study.best_trials}
    assert ("adam", "alexnet") in front  # fewest keys
    assert any(m == "resnet" for _, m in front)  # best score


def test_a_branch_mappings_keys_reordered_are_the_same_search_and_a_new_choice_is_refused_up_front(
    ray_local, write_space, tmp_path, quiet_console
):
    """Reordered keys were refused as another search; --accept-change of a new choice was recorded, then the
    sweep stopped at its first sample and each resume added a FAIL trial."""
    store = Store.at(tmp_path / "store")
    raw = {"name": "reorder", "trainable": BRANCHY, "metric": "score", "mode": "max", "config": {"steps": 1},
           "space": SPACE, "sampler": {"name": "random", "seed": 3}, "trials": 3}  # fmt: skip
    runner.run(plan.prepare(str(write_space(raw))), store, console=quiet_console)

    choices = dict(reversed(SPACE["model"]["choices"].items()))
    reordered = {**SPACE, "model": {"type": "categorical", "choices": choices}}
    again = runner.run(plan.prepare(str(write_space({**raw, "space": reordered}))), store, console=quiet_console)
    assert again.counts["complete"] == 3
    study = optuna.load_study(study_name="reorder", storage=store.optuna_url)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 6
    assert "definition_changes" not in study.user_attrs

    widened = {**SPACE, "optimizer": {"type": "categorical", "choices": ["adam", "sgd", "rmsprop"]}}
    result = CliRunner().invoke(
        app, ["run", str(write_space({**raw, "space": widened})), "--store", str(store.root), "--accept-change"]
    )
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert "space.optimizer: --accept-change cannot go on in study 'reorder'" in lines[0] and "--new" in lines[0]
    study = optuna.load_study(study_name="reorder", storage=store.optuna_url)
    assert len(study.trials) == 6 and "definition_changes" not in study.user_attrs  # nothing recorded

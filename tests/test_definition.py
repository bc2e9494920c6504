"""One sweep name means one search: search/space/definition.py, and ``run`` refusing (or, asked to, recording) a
changed definition of an existing study."""

import optuna
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from search.commands.cli import app
from search.space.definition import definition, differences, recorded
from search.stores.store import Store

SPACE = {
    "trainable": "flaky",
    "config": {"steps": 3, "sleep": 0.0},
    "space": {"x": {"type": "float", "low": 0.0, "high": 1.0, "log": False, "step": None}},
    "budget": {"sweep": 60.0, "trial": None},
    "sampler": {"name": "tpe", "seed": 0},
    "trials": 4,
}


def test_what_defines_a_search_and_what_does_not():
    base = definition(SPACE, ["score"], ["max"])
    # run settings are not the search
    for other in ({"trials": 40}, {"sampler": {"name": "random", "seed": 7}}, {"concurrency": 4}, {"budget": {}}):
        assert differences(base, definition(SPACE | other, ["score"], ["max"])) == [], other
    # the search is
    changed = definition(SPACE | {"config": {"steps": 1, "sleep": 0.0, "x": 0.2}}, ["score"], ["max"])
    assert differences(base, changed) == ["config.steps: 3 -> 1", "config.x: (none) -> 0.2"]
    narrower = {"x": {**SPACE["space"]["x"], "high": 0.5}, "y": {"type": "int", "low": 1, "high": 4}}
    assert differences(base, definition(SPACE | {"space": narrower}, ["score"], ["max"])) == [
        "space.x.high: 1.0 -> 0.5",
        "space.y.high: (none) -> 4",
        "space.y.low: (none) -> 1",
        "space.y.type: (none) -> int",
    ]
    assert differences(base, definition(SPACE, ["loss"], ["min"])) == [
        'metric: ["score"] -> ["loss"]',
        'mode: ["max"] -> ["min"]',
    ]
    assert differences(base, definition(SPACE | {"value": "last"}, ["score"], ["max"])) == ["value: best -> last"]
    assert differences(base, definition(SPACE | {"repeats": 3}, ["score"], ["max"])) == ["repeats: 1 -> 3"]
    trial_budget = SPACE | {"budget": {"trial": 30.0}}
    assert differences(base, definition(trial_budget, ["score"], ["max"])) == ["trial_budget: (none) -> 30.0"]
    # 3 and 3.0 are one value; a removed key shows as (none)
    assert differences(base, definition(SPACE | {"config": {"steps": 3.0, "sleep": 0}}, ["score"], ["max"])) == []
    assert differences(base, definition(SPACE | {"config": {"steps": 3}}, ["score"], ["max"])) == [
        "config.sleep: 0.0 -> (none)"
    ]


def test_a_study_from_before_definitions_is_compared_through_the_space_it_recorded():
    old = recorded({"space": SPACE}, ["score"], ["max"])
    assert old == definition(SPACE, ["score"], ["max"])
    assert recorded({}, None, ["max"]) is None  # a study hpsearch never ran: nothing to compare


def run_cli(*args: str):
    return CliRunner().invoke(app, list(args), terminal_width=200)


@pytest.mark.slow
def test_a_changed_search_is_refused_with_each_difference_and_nothing_written(ray_local, flaky_space, tmp_path):
    store = Store.at(tmp_path / "store")
    path = str(flaky_space("one-search", {"steps": 3}, trials=2))
    assert run_cli("run", path, "--store", str(store.root)).exit_code == 0

    def state():
        study = optuna.load_study(study_name="one-search", storage=store.optuna_url)
        client = MlflowClient(store.mlflow_url)
        runs = client.search_runs([client.get_experiment_by_name("one-search").experiment_id])
        return len(study.trials), len(runs), dict(study.user_attrs)

    before = state()
    result = run_cli("run", path, "--store", str(store.root), "--set", "config.steps=1", "--set", "space.x.high=0.5")
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert "\n" not in line and "config.steps: 3 -> 1; space.x.high: 1.0 -> 0.5" in line, line
    assert "--new" in line and "--accept-change" in line
    assert state() == before  # no trial, no run, no attribute written

    # the same search again (another trial count and sampler seed) goes on without a word
    result = run_cli("run", path, "--store", str(store.root), "--trials", "1", "--set", "sampler.seed=5")
    assert result.exit_code == 0 and "the search of" not in result.stderr

    # --accept-change goes on, and says so on the study and the trials after it
    result = run_cli("run", path, "--store", str(store.root), "--set", "config.steps=1", "--accept-change")
    assert result.exit_code == 0, result.output
    assert "the search of one-search changed (config.steps: 3 -> 1): recorded on the study as change 1" in result.stderr
    study = optuna.load_study(study_name="one-search", storage=store.optuna_url)
    (change,) = study.user_attrs["definition_changes"]
    assert change["changes"] == ["config.steps: 3 -> 1"] and change["trials_before"] == 3
    assert [t.user_attrs.get("definition_version") for t in study.trials] == [None, None, None, 1, 1]
    assert study.user_attrs["definition"]["config"]["steps"] == 1
    # and from then on the new definition is the study's: the old one is the change now
    result = run_cli("run", path, "--store", str(store.root), "--trials", "1")
    assert result.exit_code == 2 and "config.steps: 1 -> 3" in result.stderr

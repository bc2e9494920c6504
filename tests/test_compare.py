"""hpsearch compare: one table from the study and MLflow, with repeats as mean ± std rows."""

import csv
import io

import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from search import runner
from search.cli import app
from search.store import Store

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
        runner.run(runner.prepare(str(path)), store, console=Console(file=io.StringIO()))
    return store


def test_compare_with_repeats_gives_mean_std_and_each_seed(store):
    result = CliRunner().invoke(app, ["compare", "near", "--store", str(store.root), "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["x"] for r in rows] == ["0.25", "0.35"] or [r["x"] for r in rows] == ["0.35", "0.25"]
    for r in rows:
        assert r["n"] == "3" and len(r["seeds"].split()) == 3
        assert float(r["± std"]) == pytest.approx(0.0)  # flaky's score does not depend on the seed
        assert float(r["score"]) == pytest.approx(-((float(r["x"]) - 0.3) ** 2))  # best of its two steps


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

"""search/readback/run_metrics.py: the latest values read from MLflow's table are MLflow's own."""

import math

import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from search.readback import run_metrics
from search.stores.store import Store


@pytest.fixture
def runs(tmp_path) -> tuple[Store, list[str]]:
    """Three runs: steps logged out of order (the latest is the greatest step, not the last logged nor the
    largest value), a NaN, a key one run lacks."""
    store = Store.at(tmp_path / "store")
    store.create()
    client = MlflowClient(store.mlflow_url)
    experiment = client.create_experiment("e", artifact_location=str(store.artifacts))
    ids = []
    for i, steps in enumerate([[(1, 0.5), (3, 0.7), (2, 0.9)], [(1, 0.1), (2, float("nan"))], [(5, 0.3)]]):
        run = client.create_run(experiment).info.run_id
        metrics = [Metric("loss", value, 1000 + step, step) for step, value in steps]
        if i != 2:
            metrics.append(Metric("param_count", 100.0 * (i + 1), 1, 0))
        client.log_batch(run, metrics=metrics)
        ids.append(run)
    return store, ids


def same(a: dict, b: dict) -> bool:
    norm = {r: {k: "nan" if math.isnan(v) else v for k, v in m.items()} for r, m in a.items() if m}
    return norm == {r: {k: "nan" if math.isnan(v) else v for k, v in m.items()} for r, m in b.items() if m}


def test_the_table_gives_what_mlflows_client_gives(runs):
    store, ids = runs
    keys = ["loss", "param_count", "absent"]
    from_table = run_metrics.latest(store, ids, keys)
    from_client = run_metrics._from_client(store.mlflow_url, ids, keys)
    assert same(from_table, from_client), (from_table, from_client)
    assert from_table[ids[0]] == {"loss": 0.7, "param_count": 100.0}  # step 3's value: the latest step
    assert math.isnan(from_table[ids[1]]["loss"]) and from_table[ids[2]] == {"loss": 0.3}


def test_tables_it_cannot_read_are_asked_through_mlflows_client(runs, monkeypatch):
    store, ids = runs

    def broken(*args):
        raise RuntimeError("no such table: latest_metrics")

    monkeypatch.setattr(run_metrics, "_from_table", broken)
    assert run_metrics.latest(store, ids, ["loss"])[ids[0]] == {"loss": 0.7}

"""metric_rows writes a run's steps in bulk: what MLflow then reads back must be what its own log_batch
would have left, value for value (NaN, infinities, repeats, the latest value of each key)."""

import math

import pytest
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from search.stores.metric_rows import bulk_writer


@pytest.fixture
def client(tmp_path):
    return MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")


def history(client, run_id, key):
    return sorted(
        (m.step, m.timestamp, "nan" if math.isnan(m.value) else m.value) for m in client.get_metric_history(run_id, key)
    )


def two_runs(client):
    experiment = client.create_experiment("rows")
    return client.create_run(experiment).info.run_id, client.create_run(experiment).info.run_id


def steps(n_steps, keys, t0=1000):
    odd = [math.nan, math.inf, -math.inf, 0.5, -2.0]
    return [
        Metric(f"m{k}", odd[s % len(odd)] if k == 1 else float(s * k - 7), t0 + s % 3, s)
        for s in range(n_steps)
        for k in range(keys)
    ]


WRITES = {  # each a list of the batches one run is given, in order
    "one batch": [steps(30, 4)],
    "repeats in a batch": [steps(10, 3) + steps(10, 3)[:5]],
    "later steps after earlier": [steps(10, 3), [Metric("m0", 99.0, 5, 50), Metric("m2", -1.0, 1, 3)]],
    "an older step after newer: latest stays": [steps(20, 2), [Metric("m0", 1e9, 9999, 2)]],
    "a batch repeated whole": [steps(10, 2), steps(10, 2)],
    "one step logged four times in one batch: the later timestamp, then the larger value": [
        [Metric("a", 1.0, 10, 1), Metric("a", 5.0, 11, 1), Metric("a", 0.0, 11, 1), Metric("a", 7.0, 9, 1)],
    ],
    "the latest value turns NaN in a later batch": [
        [Metric("a", 0.5, 10, 1), Metric("b", 2.0, 10, 1)],
        [Metric("a", math.nan, 11, 2), Metric("b", math.inf, 11, 2)],
    ],
    "same step, later timestamp, and a larger value": [
        [Metric("a", 1.0, 10, 1)],
        [Metric("a", 0.0, 11, 1)],
        [Metric("a", 5.0, 11, 1), Metric("b", math.nan, 1, 0)],
    ],
}


@pytest.mark.parametrize("batches", WRITES.values(), ids=WRITES.keys())
def test_bulk_rows_read_back_as_mlflows_own_log_batch_leaves_them(client, batches):
    bulk = bulk_writer(client)
    assert bulk is not None  # a SQLite store is one it writes
    theirs, ours = two_runs(client)
    for batch in batches:
        for start in range(0, len(batch), 1000):
            client.log_batch(theirs, metrics=batch[start : start + 1000])
        bulk(ours, batch)
    keys = {m.key for batch in batches for m in batch}
    for key in keys:
        assert history(client, ours, key) == history(client, theirs, key)
    expected, got = client.get_run(theirs).data.metrics, client.get_run(ours).data.metrics
    assert expected.keys() == got.keys() == keys
    assert all(math.isnan(expected[k]) and math.isnan(got[k]) or expected[k] == got[k] for k in keys)


def test_rows_mlflow_would_refuse_are_refused(client):
    bulk = bulk_writer(client)
    _, run_id = two_runs(client)
    with pytest.raises(MlflowException, match="Invalid value"):
        bulk(run_id, [Metric("ok", 1.0, 1, 0), Metric("../x", 1.0, 1, 0)])
    assert client.get_metric_history(run_id, "ok") == []  # the batch is refused whole
    client.delete_run(run_id)
    with pytest.raises(MlflowException, match="must be in the 'active' state"):
        bulk(run_id, [Metric("ok", 1.0, 1, 0)])


def test_a_tracking_server_is_written_through_its_api():
    assert bulk_writer(MlflowClient("http://127.0.0.1:1")) is None

"""The MLflow writer process: the driver's run writes, made in order in a process of their own."""

import logging
import os
import signal

import pytest
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from search.mlflow_writer import MlflowWriter, WriterError


@pytest.fixture
def store(tmp_path):
    logging.getLogger("alembic").setLevel(logging.WARNING)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    writer = MlflowWriter(uri)
    yield client, client.create_experiment("e"), writer
    writer.close()


def test_runs_are_written_in_order_and_synced(store):
    client, experiment, writer = store
    writer.create_run("a", experiment, "trial-0000", {"optuna.trial_number": "0"})
    writer.log_batch("a", [Metric("score", 0.5, 0, s) for s in range(1, 4)], [Param("lr", "0.1")], [])
    writer.log_batch("a", [], [], [RunTag("optuna.state", "COMPLETE")])
    writer.set_terminated("a", "FINISHED")
    writer.sync()
    run = client.get_run(writer.run_id("a"))
    assert run.info.run_name == "trial-0000" and run.info.status == "FINISHED"
    assert run.data.params == {"lr": "0.1"} and run.data.tags["optuna.state"] == "COMPLETE"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "score")] == [1, 2, 3]


def test_a_failed_write_is_raised_at_the_next_sync_and_the_writer_goes_on(store):
    client, experiment, writer = store
    writer.log_batch("never-created", [Metric("score", 1.0, 0, 1)], [], [])
    with pytest.raises(WriterError, match="KeyError: 'never-created'"):
        writer.sync()
    writer.create_run("b", experiment, "trial-0001", {})
    writer.sync()  # the failure was told once
    assert client.get_run(writer.run_id("b")).info.status == "RUNNING"


def test_ctrl_c_to_the_process_group_leaves_the_writer_running(store):
    client, experiment, writer = store
    writer.create_run("c", experiment, "trial-0002", {})
    writer.sync()
    os.kill(writer._proc.pid, signal.SIGINT)
    os.kill(writer._proc.pid, signal.SIGTERM)
    writer.set_terminated("c", "KILLED")  # the driver closing its runs after the interrupt
    writer.sync()
    assert client.get_run(writer.run_id("c")).info.status == "KILLED"


def test_a_dead_writer_is_an_error_not_a_hang(store):
    _, experiment, writer = store
    writer._proc.kill()
    writer._proc.wait()
    with pytest.raises(WriterError, match="MLflow writer process ended"):
        writer.create_run("d", experiment, "trial-0003", {})
        writer.sync()

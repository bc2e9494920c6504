"""The MLflow writer process: the driver's run writes, made in order in a process of their own."""

import logging
import os
import signal
import time

import pytest
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from search.stores.mlflow_writer import MlflowWriter, WriterError


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


def test_a_call_answers_with_its_value_or_raises_its_failure_and_the_writer_goes_on(store, tmp_path):
    """The sweep's own writes wait for their answer: an experiment's id, an artifact copied, or the error."""
    client, experiment, writer = store
    assert writer.experiment("e", None, {}) == experiment  # the one made above, found by name
    (tmp_path / "out.txt").write_text("hello")
    with pytest.raises(WriterError, match="KeyError: 'nowhere'"):
        writer.log_artifacts("nowhere", tmp_path / "out.txt", "logs")
    with pytest.raises(WriterError, match="no such call: 'write_logs'"):
        writer._call("write_logs", "a")  # only the writer's calls, not any of its methods
    writer.create_run("a", experiment, "trial-0000", {})
    writer.log_artifacts("a", tmp_path / "out.txt", "logs")
    assert [f.path for f in client.list_artifacts(writer.run_id("a"), "logs")] == ["logs/out.txt"]


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


def test_a_sync_that_waits_for_a_backlog_says_how_much_is_left(store, monkeypatch):
    import search.stores.mlflow_writer

    client, experiment, writer = store
    monkeypatch.setattr(search.stores.mlflow_writer, "WAIT_REPORT_S", 0.05)
    seen = []
    writer.on_wait = lambda written, sent: seen.append((written, sent))
    writer.create_run("big", experiment, "trial-0003", {})
    steps = [Metric(f"m{k}", 0.5 * k, 0, s) for s in range(3000) for k in range(40)]  # 120,000 values
    writer.log_batch("big", steps, [], [])
    writer.sync()
    assert seen, "a sync of 120,000 values took under 0.05 s: nothing to report"
    assert all(sent == 120_000 for _, sent in seen)
    written = [w for w, _ in seen]
    # reported while values were still to go (the last report may come after the last part is in, before
    # the sync's answer: the wait is cut in 0.05 s slices)
    assert written == sorted(written) and written[0] < 120_000
    assert len(client.get_metric_history(writer.run_id("big"), "m39")) == 3000


def test_the_backlog_line_gives_what_is_left_and_the_rate(monkeypatch):
    import io

    from rich.console import Console

    from search.driver.progress import BacklogLine

    out = io.StringIO()
    line = BacklogLine(Console(file=out, width=200))
    clock = iter([100.0, 105.0, 107.0])
    monkeypatch.setattr("search.driver.progress.time.monotonic", lambda: next(clock))
    line(0, 50_000)
    line(20_000, 50_000)
    line(30_000, 60_000)
    monkeypatch.undo()
    assert out.getvalue().splitlines() == [
        "writing to MLflow: 50,000 metric values of 50,000 still to go",
        "writing to MLflow: 30,000 metric values of 50,000 still to go, 4,000 a second",
        "writing to MLflow: 30,000 metric values of 60,000 still to go, 5,000 a second",
    ]


def test_once_its_driver_is_gone_sigterm_ends_a_writer_still_writing_its_backlog(store):
    """An orphan writer ignored SIGTERM and wrote a backlog no one waited for, for minutes."""
    client, experiment, writer = store
    writer.create_run("e", experiment, "trial-0004", {})
    writer.sync()
    writer.log_batch("e", [Metric("score", 0.5, 0, s) for s in range(300_000)], [], [])
    writer._proc.stdin.flush()
    writer._proc.stdin.close()  # the driver is gone (as a SIGKILL leaves it): the writer goes on writing
    time.sleep(1.0)
    assert writer._proc.poll() is None  # still writing what it was given
    writer._proc.send_signal(signal.SIGTERM)
    assert writer._proc.wait(timeout=10) == 128 + signal.SIGTERM

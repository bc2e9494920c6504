"""A disk that fills up: before a sweep, one line and no database left half made; mid-sweep, the sweep
stops with one line (exit 1), and once there is space `hpsearch resume` finishes it with nothing lost.

The disk is a small tmpfs mounted for the test (root only; skipped elsewhere)."""

import os
import shutil
import signal
import subprocess
import sys
import time

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from search.stores.store import Store

pytestmark = pytest.mark.slow


@pytest.fixture
def small_disk(tmp_path, missing_service):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        missing_service("filling a disk needs a small tmpfs, which only root can mount")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


def fill(disk) -> None:
    """Write zeros until the disk is full (dd then fails: no space left)."""
    subprocess.run(["dd", "if=/dev/zero", f"of={disk / 'filler'}", "bs=1M"], capture_output=True)
    assert shutil.disk_usage(disk).free < (1 << 20)


def hpsearch(*args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "search.commands.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True, **kwargs,
    )  # fmt: skip


def reporting_trials(store: Store) -> int:
    try:
        study = optuna.load_study(study_name="full", storage=store.optuna_url)
    except Exception:
        return 0
    return sum(t.state == TrialState.RUNNING and len(t.intermediate_values) > 1 for t in study.trials)


def full_sweep(flaky_space):
    return str(flaky_space("full", {"steps": 20, "sleep": 0.2}, trials=4, concurrency=2))


def test_a_store_on_a_full_disk_is_one_line_and_no_database(small_disk, flaky_space):
    fill(small_disk)
    store = small_disk / "store"
    done = subprocess.run(
        [sys.executable, "-m", "search.commands.cli", "run", full_sweep(flaky_space), "--store", str(store)],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: --store: no space left on the disk of the store ({store}): nothing was recorded; free some space"
    )
    assert "Traceback" not in done.stderr
    assert not list(store.glob("*.db"))


@pytest.mark.campaign
def test_a_disk_that_fills_mid_sweep_stops_it_and_resume_finishes_it(small_disk, flaky_space):
    store = Store.at(small_disk / "store")
    proc = hpsearch("run", full_sweep(flaky_space), "--store", str(store.root))
    try:
        deadline = time.monotonic() + 150
        while reporting_trials(store) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.3)
        if reporting_trials(store) != 2:  # the driver's output says why (it is read only once it has ended)
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail("no two trials reported:\n" + proc.communicate(timeout=30)[0][-3000:])
        fill(small_disk)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 1, out[-3000:]
    assert "Traceback" not in out and "─" not in out  # no rich traceback box either
    assert out.strip().splitlines()[-1] == (
        f"error: no space left on the disk of the store ({store.root}): the sweep stopped, and what finished "
        "is kept; free some space, then `hpsearch resume full` finishes it"
    )

    (small_disk / "filler").unlink()
    resumed = hpsearch("resume", "full", "--store", str(store.root))
    out, _ = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, out[-3000:]

    study = optuna.load_study(study_name="full", storage=store.optuna_url)
    states = [t.state for t in study.trials]
    assert TrialState.RUNNING not in states and states.count(TrialState.COMPLETE) == 4
    client = MlflowClient(store.mlflow_url)
    runs = client.search_runs([client.get_experiment_by_name("full").experiment_id])
    assert "RUNNING" not in {r.info.status for r in runs}
    by_trial = {}
    for r in runs:
        if "optuna.trial_number" in r.data.tags:
            by_trial.setdefault(int(r.data.tags["optuna.trial_number"]), []).append(r.info.status)
    # the two stores agree, one MLflow run per trial
    expected = {t.number: ["FINISHED" if t.state == TrialState.COMPLETE else "FAILED"] for t in study.trials}
    assert by_trial == expected


def test_out_of_space_is_found_however_deep_and_however_wrapped():
    import errno
    import sqlite3

    from search.stores.store import out_of_space

    def chained(inner: BaseException, outer: BaseException) -> BaseException:
        try:
            try:
                raise inner
            except BaseException as e:
                raise outer from e
        except BaseException as e:
            return e

    assert out_of_space(chained(OSError(errno.ENOSPC, "No space left on device"), RuntimeError("checkpoint")))
    assert out_of_space(chained(sqlite3.OperationalError("database or disk is full"), KeyError("commit")))
    assert out_of_space(RuntimeError("TuneError: Traceback ... sqlite3.OperationalError: database or disk is full"))
    assert not out_of_space(chained(sqlite3.OperationalError("database is locked"), RuntimeError("commit")))
    assert not out_of_space(OSError(errno.EACCES, "Permission denied"))

"""Faults of the host, not of the trainable: a trial that takes the machine's memory fails alone."""

import os
import subprocess
import sys

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from search.stores.store import Store

pytestmark = pytest.mark.slow

GiB = 1 << 30


def meminfo() -> dict[str, int]:
    fields = dict(line.split(":", 1) for line in open("/proc/meminfo"))
    return {k: int(v.split()[0]) * 1024 for k, v in fields.items()}


@pytest.mark.campaign
def test_a_trial_killed_by_rays_memory_monitor_fails_alone_and_the_sweep_goes_on(
    write_space, tmp_path, missing_service
):
    """Ray's memory monitor kills a worker above a share of the host's memory; the threshold is set a few
    GiB above what is used now, and the trial at x=0.9 takes up to 8 GiB, so only it crosses the line."""
    mem = meminfo()
    if mem["MemAvailable"] < 12 * GiB:
        missing_service("needs 12 GiB of free memory to push one trial over Ray's threshold safely")
    used = mem["MemTotal"] - mem["MemAvailable"]
    threshold = (used + 3.5 * GiB) / mem["MemTotal"]  # room for the driver and Ray's own processes
    store = Store.at(tmp_path / "store")
    space = write_space(
        {
            "name": "oom",
            "trainable": "flaky",
            "config": {"steps": 3, "hog_above": 0.5},
            "space": {"x": {"type": "categorical", "choices": [0.1, 0.9, 0.3]}},
            "sampler": {"name": "grid"},
            "concurrency": 1,
        }
    )
    env = os.environ | {"RAY_memory_usage_threshold": f"{threshold:.3f}"}
    done = subprocess.run(
        [sys.executable, "-m", "search.commands.cli", "run", str(space), "--store", str(store.root)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert "killed by Ray's memory monitor" in out

    study = optuna.load_study(study_name="oom", storage=store.optuna_url)
    states = {t.params["x"]: t.state for t in study.trials}
    assert states == {0.1: TrialState.COMPLETE, 0.9: TrialState.FAIL, 0.3: TrialState.COMPLETE}
    failed = next(t for t in study.trials if t.state == TrialState.FAIL)
    assert failed.user_attrs["fail_reason"].startswith("killed by Ray's memory monitor: the host ran low on memory")

    client = MlflowClient(store.mlflow_url)
    runs = client.search_runs([client.get_experiment_by_name("oom").experiment_id])
    parent = next(r for r in runs if r.data.tags.get("hpsearch.role") == "sweep")
    assert parent.info.status == "FINISHED"
    children = {r.data.params["x"]: r for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert {x: r.info.status for x, r in children.items()} == {"0.1": "FINISHED", "0.9": "FAILED", "0.3": "FINISHED"}
    assert "memory monitor" in children["0.9"].data.tags["error"]

"""hpsearch up / down: a warm Ray that sweeps attach to, and that outlives them until down stops it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import psutil
import pytest
from optuna.trial import TrialState

from search.stores.store import Store


def hpsearch(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    cmd = [sys.executable, "-m", "search.commands.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def in_group(pgid: int) -> list[str]:
    found = []
    for p in psutil.process_iter(["pid", "name"]):
        try:
            if os.getpgid(p.info["pid"]) == pgid:
                found.append(p.info["name"])
        except (ProcessLookupError, psutil.Error):
            pass
    return found


@pytest.mark.slow
def test_sweeps_attach_to_the_warm_ray_which_outlives_them_until_down(flaky_space, tmp_path):
    state_file = tmp_path / "cache" / "warm-ray.json"
    os.environ["HPSEARCH_CACHE"], cache = str(tmp_path / "cache"), os.environ["HPSEARCH_CACHE"]
    try:
        started = hpsearch("up", "--cpus", "2")
        assert started.returncode == 0, started.stderr[-2000:]
        state = json.loads(state_file.read_text())
        assert state["address"] in started.stdout and state["address"].startswith("127.0.0.1:")
        assert {"gcs_server", "raylet"} <= set(in_group(state["pid"]))

        again = hpsearch("up")
        assert again.returncode == 2 and again.stderr.count("error:") == 1 and "up already" in again.stderr

        store = Store.at(tmp_path / "store")
        space = flaky_space("warm", {"steps": 2}, trials=2, concurrency=2)
        done = hpsearch("run", str(space), "--store", str(store.root))
        assert done.returncode == 0, done.stderr[-3000:]
        assert f"on the warm Ray at {state['address']}" in done.stderr
        assert {"gcs_server", "raylet"} <= set(in_group(state["pid"]))  # still up after the sweep
        study = optuna.load_study(study_name="warm", storage=store.optuna_url)
        assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2

        stopped = hpsearch("down")
        assert stopped.returncode == 0 and state["address"] in stopped.stdout
        assert in_group(state["pid"]) == [] and not state_file.exists()
        from ray._private.utils import get_ray_address_file

        ray_address = Path(get_ray_address_file(None))  # where ray.init() looks for a Ray to join
        assert not ray_address.exists() or ray_address.read_text().strip() != state["address"]
        assert "no warm Ray was up" in hpsearch("down").stdout
    finally:
        if state_file.exists():
            hpsearch("down")
        os.environ["HPSEARCH_CACHE"] = cache

"""hpsearch up / down: a warm Ray that sweeps attach to, and that outlives them until down stops it."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
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


def ray_groups(cache: Path) -> set[int]:
    """The process groups of Ray's processes started with this cache (their log is the cache's)."""
    groups = set()
    for p in psutil.process_iter(["pid", "name", "cmdline"]):
        try:
            if p.info["name"] in ("gcs_server", "raylet") or "ray.scripts.scripts" in " ".join(p.info["cmdline"] or []):
                pgid = os.getpgid(p.info["pid"])
                if (Path(f"/proc/{pgid}/environ").read_bytes().find(str(cache).encode())) >= 0:
                    groups.add(pgid)
        except (ProcessLookupError, PermissionError, psutil.Error, OSError):
            pass
    return groups


@pytest.fixture
def own_cache(tmp_path):
    """HPSEARCH_CACHE of the test's own, for the commands it runs; every Ray they left is stopped after."""
    cache = tmp_path / "cache"
    before, os.environ["HPSEARCH_CACHE"] = os.environ["HPSEARCH_CACHE"], str(cache)
    try:
        yield cache
    finally:
        hpsearch("down")
        for pgid in ray_groups(cache):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        os.environ["HPSEARCH_CACHE"] = before


@pytest.mark.slow
def test_two_ups_at_once_start_one_warm_ray_and_its_log_never_follows_a_link(own_cache, tmp_path):
    own_cache.mkdir()
    victim = tmp_path / "victim.conf"
    victim.write_text("a file of the user's\n")
    (own_cache / "warm-ray.log").symlink_to(victim)
    cmd = [sys.executable, "-m", "search.commands.cli", "up", "--cpus", "1"]
    both = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = sorted((p.wait(timeout=200), p.stderr.read()) for p in both)
    assert [code for code, _ in results] == [0, 2], results
    assert "up already" in results[1][1] and results[1][1].count("error:") == 1
    assert len(ray_groups(own_cache)) == 1
    assert victim.read_text() == "a file of the user's\n"
    assert not (own_cache / "warm-ray.log").is_symlink()
    assert "is stopped" in hpsearch("down").stdout
    assert ray_groups(own_cache) == set()
    assert "no warm Ray was up" in hpsearch("down").stdout


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_an_up_interrupted_as_ray_starts_leaves_nothing_down_cannot_stop(own_cache, sig):
    cmd = [sys.executable, "-m", "search.commands.cli", "up", "--cpus", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    state_file = own_cache / "warm-ray.json"
    deadline = time.monotonic() + 120
    while not state_file.exists() and time.monotonic() < deadline:  # Ray's processes are starting now
        time.sleep(0.05)
    assert state_file.exists(), proc.communicate(timeout=60)
    proc.send_signal(sig)
    code = proc.wait(timeout=120)
    if sig == signal.SIGINT:
        assert code == 130 and "interrupted: the warm Ray was not started" in proc.stderr.read()
        assert ray_groups(own_cache) == set() and not state_file.exists()
    else:
        assert ray_groups(own_cache), "a SIGKILL leaves Ray starting: down must find it"
        hpsearch("down")
        deadline = time.monotonic() + 30
        while ray_groups(own_cache) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ray_groups(own_cache) == set()


@pytest.mark.parametrize("command", ["up", "down"])
def test_up_and_down_with_a_cache_that_cannot_be_used_are_one_line(command, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from search.commands.cli import app

    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv("HPSEARCH_CACHE", str(tmp_path / "a-file"))
    result = CliRunner().invoke(app, [command])
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert lines[0].startswith("error: HPSEARCH_CACHE: the cache folder") and "cannot be used" in lines[0]


@pytest.fixture
def not_ray():
    """A web server on a port of its own: something that listens, and is not Ray."""
    import http.server
    import threading

    class Quiet(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def test_a_state_file_naming_another_process_and_port_is_not_a_warm_ray(tmp_path, monkeypatch, not_ray):
    """It made run hang for minutes on a port where Ray was not; and down would have stopped the named
    process's group (here, this test's own)."""
    from typer.testing import CliRunner

    from search.commands.cli import app
    from search.driver import warm_ray

    monkeypatch.setenv("HPSEARCH_CACHE", str(tmp_path))
    (tmp_path / "warm-ray.json").write_text(json.dumps({"address": f"127.0.0.1:{not_ray}", "pid": os.getpid()}))
    assert warm_ray.address() is None
    result = CliRunner().invoke(app, ["down"])
    assert result.exit_code == 0 and "no warm Ray was up" in result.stdout


@pytest.mark.parametrize("listener", ["a web server", "a silent socket"])
def test_an_address_where_something_else_listens_is_one_line_before_anything_starts(listener, tmp_path, not_ray):
    import socket

    from typer.testing import CliRunner

    from search.commands.cli import app

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    port = not_ray if listener == "a web server" else silent.getsockname()[1]
    space = tmp_path / "s.yaml"
    space.write_text("name: s\ntrainable: flaky\nspace: {x: {type: float, low: 0.0, high: 1.0}}\n")
    store = tmp_path / "store"
    result = CliRunner().invoke(app, ["run", str(space), "--store", str(store), "--address", f"127.0.0.1:{port}"])
    silent.close()
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert "but not Ray" in lines[0] and not store.exists()

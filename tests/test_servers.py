"""The watch commands against real servers on free loopback ports: optuna-dashboard, the MLflow UI, sweeps."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from search.commands.cli import app
from search.commands.servers import free_port, start_dashboard, start_mlflow_ui
from search.driver import plan, runner
from search.stores.store import Store

pytestmark = pytest.mark.slow


SLEEP = {"type": "categorical", "choices": [0.0]}


@pytest.fixture(scope="module")
def swept_store(tmp_path_factory, ray_local):
    """A store with one small finished sweep in it."""
    import io

    import yaml
    from rich.console import Console

    root = tmp_path_factory.mktemp("watch")
    path = root / "space.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "watched",
                "trainable": "flaky",
                "config": {"steps": 3},
                # conditional: only x=0.3 sets `sleep` (the dashboard shows the study as it is)
                "space": {"x": {"type": "categorical", "choices": {0.1: {}, 0.3: {"sleep": SLEEP}, 0.9: {}}}},
                "sampler": {"name": "grid"},
                "pruner": {"name": "threshold", "lower": -0.5, "n_warmup_steps": 2},
            }
        )
    )
    store = Store.at(root / "store")
    runner.run(plan.prepare(str(path)), store, console=Console(file=io.StringIO()))
    return store


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def test_dashboard_api_lists_the_study_and_its_trials(swept_store):
    server = start_dashboard(swept_store.optuna_url, "127.0.0.1", free_port())
    try:
        assert server.url.startswith("http://127.0.0.1:")
        # the storage URL (on a server it may hold a password) is not on the command line anyone can read
        assert "optuna.db" not in Path(f"/proc/{server.process.pid}/cmdline").read_text()
        studies = get_json(f"{server.url}/api/studies")["study_summaries"]
        study = next(s for s in studies if s["study_name"] == "watched")
        detail = get_json(f"{server.url}/api/studies/{study['study_id']}?after=0")
        states = sorted(t["state"] for t in detail["trials"])
        assert states == ["Complete", "Complete", "Pruned"]
        pruned = next(t for t in detail["trials"] if t["state"] == "Pruned")
        assert len(pruned["intermediate_values"]) == 2  # the curve up to where it was pruned
        params = [tuple(sorted(p["name"] for p in t["params"])) for t in detail["trials"]]
        assert sorted(params) == [("sleep", "x"), ("x",), ("x",)]  # each trial with the parameters it set
    finally:
        server.stop()
    assert server.process.poll() is not None


def test_mlflow_ui_serves_the_experiment(swept_store):
    server = start_mlflow_ui(swept_store, "127.0.0.1", free_port())
    try:
        req = urllib.request.Request(
            f"{server.url}/ajax-api/2.0/mlflow/experiments/search",
            data=json.dumps({"max_results": 10}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            names = [e["name"] for e in json.loads(r.read())["experiments"]]
        assert "watched" in names
    finally:
        server.stop()


def test_sweeps_lists_counts_and_best(swept_store):
    result = CliRunner().invoke(app, ["sweeps", "--store", str(swept_store.root)], terminal_width=80)
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    row = next(line for line in result.stdout.splitlines() if "watched" in line)
    cells = [c.strip() for c in row.strip("│ ").split("│")]
    assert cells[:5] == ["watched", "2", "1", "0", "0"]
    value, direction = cells[5].split()
    assert float(value) == pytest.approx(0.0) and direction == "(max)"  # x = 0.3 scores 0


def test_empty_store_and_port_in_use_are_clear_errors(swept_store, tmp_path):
    for command in (["sweeps"], ["dashboard"], ["ui"]):
        result = CliRunner().invoke(app, [*command, "--store", str(tmp_path / "empty")])
        assert result.exit_code == 2 and "no sweeps in" in result.stderr
        assert not (tmp_path / "empty").exists()
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        result = CliRunner().invoke(app, ["dashboard", "--store", str(swept_store.root), "--port", str(port)])
    assert result.exit_code == 2 and f"port {port} on 127.0.0.1 is in use" in result.stderr


@pytest.fixture
def command(tmp_path):
    """Starts ``hpsearch ARGS`` with its output in a file (an unread pipe can block it; the file is shown on
    failure); whatever a failed test left running is killed after it."""
    started: list[subprocess.Popen] = []

    def start(args: list[str]) -> tuple[subprocess.Popen, Path]:
        log = tmp_path / f"out-{len(started)}.txt"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "search.commands.cli", *args], stdout=out, stderr=subprocess.STDOUT
            )
        started.append(proc)
        return proc, log

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()


def wait_until(predicate, proc: subprocess.Popen, log: Path, what: str, timeout: float = 120) -> None:
    """Wait on state, not on a time window: fail early if the command exits, and show what it printed."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            pytest.fail(f"{what}: the command exited ({proc.returncode}) first:\n{log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f}s:\n{log.read_text()[-2000:]}")
        time.sleep(0.05)


def url_printed(port: int, proc: subprocess.Popen, log: Path) -> None:
    wait_until(lambda: f"http://127.0.0.1:{port}" in log.read_text(), proc, log, "the URL printed")


def stop_leaving_nothing(proc: subprocess.Popen, sig: int, log: Path, started: list) -> None:
    """Send ``sig``: the command exits 0, and every process it started is gone."""
    import psutil

    try:
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == 0, log.read_text()[-2000:]
    finally:
        proc.kill()
    _, alive = psutil.wait_procs(started, timeout=10)
    assert not alive


def test_dashboard_command_prints_the_url_and_stops_on_ctrl_c(swept_store, command):
    import psutil

    port = free_port()
    proc, log = command(["dashboard", "--store", str(swept_store.root), "--port", str(port)])
    url_printed(port, proc, log)
    assert get_json(f"http://127.0.0.1:{port}/api/studies")["study_summaries"]
    stop_leaving_nothing(proc, signal.SIGINT, log, psutil.Process(proc.pid).children(recursive=True))
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2)


@pytest.mark.campaign
def test_ui_command_serves_the_runs_and_stops_on_ctrl_c_with_its_server(swept_store, command):
    import psutil

    port = free_port()
    proc, log = command(["ui", "--store", str(swept_store.root), "--port", str(port)])
    url_printed(port, proc, log)
    started = psutil.Process(proc.pid).children(recursive=True)
    assert started, "hpsearch ui serves through an mlflow server process"
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as r:
        assert r.status == 200
    stop_leaving_nothing(proc, signal.SIGINT, log, started)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)


# A server that ignores SIGTERM, and a process it started that ignores it too: ``mlflow ui`` forwards SIGTERM to
# its uvicorn only, which mid-start does not act on it, and the job runner and huey workers never get it.
STUBBORN = (
    "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "subprocess.Popen([sys.executable, '-c', 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "time.sleep(600)']); time.sleep(600)"
)


def test_a_server_is_stopped_whole_even_when_it_and_its_children_ignore_sigterm():
    """The race that left mlflow ui's processes serving (SIGTERM while they start), made certain."""
    import psutil

    from search.commands import servers

    process = servers._spawn([sys.executable, "-c", STUBBORN])
    me = psutil.Process(process.pid)
    deadline = time.monotonic() + 30
    while not me.children() and time.monotonic() < deadline:
        time.sleep(0.05)
    started = [me, *me.children(recursive=True)]
    assert len(started) == 2
    time.sleep(0.5)  # both have set SIGTERM aside
    servers.Server("stub", "http://127.0.0.1:1", process).stop()
    _, alive = psutil.wait_procs(started, timeout=5)
    assert alive == []


def test_an_interrupt_while_the_ui_lists_its_experiments_still_stops_the_server(swept_store):
    """Under load, SIGTERM landed while `hpsearch ui` imported MLflow to list the experiments, after the server
    had started but before the command held it: the command exited 0 and left mlflow ui serving."""
    import psutil

    from search.commands import servers
    from search.commands.watch_commands import serve_store

    started = []

    def start(store):
        process = servers._spawn([sys.executable, "-c", "import time; time.sleep(600)"])
        started.append(psutil.Process(process.pid))
        return servers.Server("stub", "http://127.0.0.1:1", process)

    def announce(store, server):
        raise KeyboardInterrupt  # what sigterm_interrupts raises for a SIGTERM at this point

    serve_store(swept_store, start, announce)
    assert psutil.wait_procs(started, timeout=15)[1] == []


@pytest.mark.parametrize("when", ["while its job workers start", "while serving"])
def test_ui_command_stopped_by_sigterm_leaves_no_mlflow_uvicorn_or_worker(swept_store, when):
    """SIGTERM reaches hpsearch alone (Ctrl-C reaches the terminal's whole group): mlflow ui's uvicorn and
    its workers outlived it, serving the port. Mid-start, ``mlflow ui`` does not stop on SIGTERM within 10 s;
    once serving, it does, so only the first case fails when the server's process group is not stopped."""
    import psutil

    port = free_port()
    log = swept_store.root.parent / "ui-sigterm.txt"
    with log.open("wb") as out:  # as a service manager or a script's `&` starts it: no terminal, Ctrl-C ignored
        proc = subprocess.Popen(
            [sys.executable, "-m", "search.commands.cli", "ui", "--store", str(swept_store.root), "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )  # fmt: skip
    me = psutil.Process(proc.pid)
    seen: dict[int, psutil.Process] = {}

    def job_workers() -> bool:  # MLflow's job runner starts its huey workers some seconds after the server answers
        for p in me.children(recursive=True):
            seen.setdefault(p.pid, p)
        return any("huey" in " ".join(p.cmdline()) for p in seen.values() if p.is_running())

    wait_until(job_workers, proc, log, "mlflow ui's job workers started", timeout=90)
    if when == "while serving":
        url_printed(port, proc, log)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as r:
            assert r.status == 200
        count, steady_since = 0, time.monotonic()
        while time.monotonic() - steady_since < 8 and proc.poll() is None:  # until no new process for 8 s
            job_workers()
            if len(seen) != count:
                count, steady_since = len(seen), time.monotonic()
            time.sleep(0.2)
    job_workers()
    assert len(seen) >= 3, seen  # mlflow ui, the server it runs, its job runner
    stop_leaving_nothing(proc, signal.SIGTERM, log, list(seen.values()))
    left = [p for p in psutil.process_iter(["cmdline"]) if str(swept_store.root) in " ".join(p.info["cmdline"] or [])]
    assert left == [], left
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)


@pytest.mark.parametrize("when", ["while starting", "while serving"])
def test_dashboard_command_stopped_by_sigterm_leaves_no_server(swept_store, when, command):
    """A service manager stops with SIGTERM: optuna-dashboard must not outlive the command, even mid-start."""
    import psutil

    port = free_port()
    proc, log = command(["dashboard", "--store", str(swept_store.root), "--port", str(port)])
    me = psutil.Process(proc.pid)
    wait_until(lambda: bool(me.children()), proc, log, "optuna-dashboard started")
    started = me.children(recursive=True)
    if when == "while serving":
        url_printed(port, proc, log)
    stop_leaving_nothing(proc, signal.SIGTERM, log, started)


def test_run_with_dashboard_shows_the_sweep_live_and_stops_it_after(flaky_space, tmp_path):
    store = Store.at(tmp_path / "store")
    space = flaky_space("live", {"steps": 40, "sleep": 0.25}, trials=2, concurrency=2)
    port = free_port()
    cmd = [sys.executable, "-m", "search.commands.cli", "run", str(space), "--store", str(store.root), "--dashboard"]
    proc = subprocess.Popen(
        [*cmd, "--dashboard-port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        seen_running = False
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not seen_running:
            try:
                studies = get_json(f"http://127.0.0.1:{port}/api/studies")["study_summaries"]
                if studies:
                    detail = get_json(f"http://127.0.0.1:{port}/api/studies/{studies[0]['study_id']}?after=0")
                    seen_running = any(t["state"] == "Running" and t["intermediate_values"] for t in detail["trials"])
            except OSError:
                pass
            time.sleep(0.5)
        assert seen_running, "the dashboard never showed a running trial with intermediate values"
        out, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, out[-2000:]
    assert f"optuna-dashboard on http://127.0.0.1:{port}" in out
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2)


def test_dashboard_page_renders_the_trial_table_in_chromium(swept_store, tmp_path, chromium):
    server = start_dashboard(swept_store.optuna_url, "127.0.0.1", free_port())
    try:
        study_id = next(
            s["study_id"]
            for s in get_json(f"{server.url}/api/studies")["study_summaries"]
            if s["study_name"] == "watched"
        )
        page = f"{server.url}/dashboard/studies/{study_id}/trials"

        def chrome(*args: str, profile: str) -> subprocess.CompletedProcess:
            return chromium(page, tmp_path / profile, *args)

        dom = chrome("--dump-dom", profile="dom").stdout
        assert dom.count("Complete") >= 2 and "Pruned" in dom  # the trial list, with each trial's state
        shot = Path(os.environ.get("HPSEARCH_SCREENSHOT_DIR", tmp_path)) / "dashboard-trials.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        chrome(f"--screenshot={shot}", profile="shot")
        assert shot.read_bytes()[:4] == b"\x89PNG" and shot.stat().st_size > 10_000
    finally:
        server.stop()

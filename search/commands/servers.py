"""The two watch servers on a store: optuna-dashboard (the study, live) and the MLflow UI (the runs).

Both bind 127.0.0.1 unless told otherwise. They run as child processes: optuna-dashboard's own server
(given the storage URL through the environment, not the command line) and the mlflow ui command, so
what a user gets is exactly what those projects ship.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

from search.errors import ServerError
from search.stores.infra import free_port  # noqa: F401 - the servers' ports, and the tests'
from search.stores.store import Store


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen

    def stop(self) -> None:
        _terminate(self.process)


def _terminate(process: subprocess.Popen) -> None:
    """The server and every process it started (``mlflow ui`` runs uvicorn and its workers): its whole
    process group (``_spawn`` gave it one), SIGTERM then, after 10 s, SIGKILL."""
    from search.driver.interrupts import stop_group

    stop_group(process.pid, patience=10.0)
    process.poll()


def check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            raise ServerError(f"port {port} on {host} is in use (pick another with --port)", "--port") from None


def _tool(name: str) -> str:
    """The console script beside this Python (the venv's), else on PATH."""
    here = shutil.which(name, path=str(__import__("pathlib").Path(sys.executable).parent))
    return here or shutil.which(name) or name


class _Signals:
    """Whether SIGTERM should interrupt now, or wait until a child process has a handle we can stop."""

    deferred = False
    pending = False


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (a service manager's stop) acts as Ctrl-C, so the servers we started go down with us."""

    def interrupt(signum: int, frame: Any) -> None:
        if _Signals.deferred:
            _Signals.pending = True
            return
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _spawn(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    """Popen, with a SIGTERM that lands while it forks held back until the child can be stopped."""
    _Signals.deferred, _Signals.pending = True, False
    try:
        process = subprocess.Popen(  # a process group of its own, stopped whole (``_terminate``)
            cmd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    finally:
        _Signals.deferred = False
    if _Signals.pending:
        _terminate(process)
        raise KeyboardInterrupt
    return process


def _start(
    name: str, cmd: list[str], url: str, probe: str, timeout_s: float, env: dict[str, str] | None = None
) -> Server:
    process = _spawn(cmd, env)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                err = (process.stderr.read() if process.stderr else "").strip().splitlines()
                raise ServerError(f"{name} exited at start: {err[-1] if err else process.returncode}")
            try:
                with urllib.request.urlopen(url + probe, timeout=2) as r:
                    if r.status == 200:
                        return Server(name, url, process)
            except OSError:
                time.sleep(0.3)
        raise ServerError(f"{name} did not answer on {url} within {timeout_s:.0f}s")
    except BaseException:  # timed out, or interrupted while waiting: the server must not outlive us
        _terminate(process)
        raise


# optuna-dashboard's own command takes the storage URL as an argument, which every user of the machine can
# read (ps, /proc/PID/cmdline); a URL may hold a database password. Its server function takes it from the
# environment instead, which only the same user can read.
_DASHBOARD = (
    "import os, sys, optuna_dashboard; "
    "optuna_dashboard.run_server(os.environ.pop('HPSEARCH_DASHBOARD_STORAGE'), sys.argv[1], int(sys.argv[2]))"
)


def start_dashboard(storage_url: str, host: str, port: int, timeout_s: float = 60) -> Server:
    check_port_free(host, port)
    cmd = [sys.executable, "-c", _DASHBOARD, host, str(port)]
    env = {"HPSEARCH_DASHBOARD_STORAGE": storage_url}
    return _start("optuna-dashboard", cmd, f"http://{host}:{port}", "/api/studies", timeout_s, env)


def start_mlflow_ui(store: Store, host: str, port: int, timeout_s: float = 90) -> Server:
    check_port_free(host, port)
    cmd = [
        _tool("mlflow"), "ui", "--backend-store-uri", store.mlflow_url,
        "--default-artifact-root", store.artifacts.as_uri(), "--host", host, "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    return _start("mlflow ui", cmd, f"http://{host}:{port}", "/health", timeout_s)

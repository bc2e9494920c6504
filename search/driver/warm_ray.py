"""A warm local Ray (``hpsearch up``): started once, then each sweep on this machine attaches to it in about a
second instead of starting Ray's processes and stopping them again (6-7 s a sweep on two cores), and sweeps
run at once share the machine's CPUs and GPUs through one scheduler. ``hpsearch down`` stops it. Without
one, a sweep starts its own Ray, as it always has.

It is Ray's own ``ray start --head --block``, in a session of its own, started as a sweep's own Ray is:
listening on 127.0.0.1 only, without the autoscaler, the log monitor or the dashboard. Where it is and the
process that holds it are written to ``warm-ray.json`` in hpsearch's cache folder; a sweep attaches only
while that process lives and Ray's GCS answers, so a head killed by hand or a rebooted machine costs nothing
but the usual start.

Its trials run in the environment ``hpsearch up`` was started in, not the sweep's: the trial function still
brings the sweep's folder, its import paths and its trainables (``ray_session.trial_function``).
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from search.driver.interrupts import stop_group
from search.errors import UserError
from search.stores.empty_databases import cache_dir
from search.stores.infra import answers, free_port, speaks_grpc

STATE = "warm-ray.json"
START_TIMEOUT_S = 90.0


def state_file() -> Path:
    return cache_dir() / STATE


def address() -> str | None:
    """The warm Ray's GCS address while it is up; None when there is none (or it died)."""
    state = _read()
    if state is None or not _alive(state["pid"]):
        return None
    host, _, port = state["address"].rpartition(":")
    return state["address"] if speaks_grpc((host, int(port)), timeout=1.0) else None


def start(num_cpus: int | None = None, num_gpus: int | None = None) -> str:
    """Start the warm Ray and return its address; refused if one is up already.

    One ``up`` at a time (a lock in the cache folder): a second one waits, then finds the first one's Ray.
    The state file names Ray's process group as soon as it is started, so ``down`` stops a Ray whose ``up``
    was killed while it waited; an ``up`` interrupted (Ctrl-C, SIGTERM) stops what it started itself."""
    folder = _usable_cache()
    with _locked(folder / "warm-ray.lock"):
        if (running := address()) is not None:
            raise UserError(f"a warm Ray is up already at {running} (hpsearch down stops it)")
        if (state := _read()) is not None and _alive(state["pid"]):  # an up killed as its Ray started
            raise UserError(
                f"a warm Ray started at {state['address']} (process group {state['pid']}) is not answering yet: "
                "hpsearch down stops it"
            )
        return _start(folder, num_cpus, num_gpus)


def _start(folder: Path, num_cpus: int | None, num_gpus: int | None) -> str:
    from search.driver import ray_patches

    port = free_port()
    log = folder / "warm-ray.log"
    ray_cli = [sys.executable, "-m", "ray.scripts.scripts"]
    command = [
        *ray_cli, "start", "--head", "--block",
        f"--port={port}", "--node-ip-address=127.0.0.1", "--include-dashboard=false",
        "--include-log-monitor=false", "--no-monitor", "--disable-usage-stats",
        f"--num-cpus={num_cpus if num_cpus is not None else os.cpu_count()}",
        *([f"--num-gpus={num_gpus}"] if num_gpus is not None else []),
    ]  # fmt: skip
    # 127.0.0.1 and workers at niceness 0, as ray_patches.local_only; and Ray's token authentication, as a
    # Ray started by ray.init() has it, with the user's token (~/.ray/auth_token), made first if there is
    # none: other users of the machine reach the port, not the token.
    env = {**os.environ, **ray_patches.local_env(), "RAY_AUTH_MODE": "token"}
    subprocess.run([*ray_cli, "get-auth-token", "--generate"], capture_output=True, env=env, check=True)
    where = f"127.0.0.1:{port}"
    with _new_file(log) as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    _write({"address": where, "pid": process.pid, "log": str(log)})  # down finds it from now on
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while not (answers(("127.0.0.1", port), timeout=0.5) and "raylet" in _names_in_group(process.pid)):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
                raise UserError(f"the warm Ray did not start ({tail[0]}); its log: {log}")
            time.sleep(0.2)
    except BaseException:  # it failed, or a Ctrl-C or SIGTERM came: what it started goes with it
        stop_group(process.pid)
        if (_read() or {}).get("pid") == process.pid:
            state_file().unlink(missing_ok=True)
        raise
    return where


def stop() -> str | None:
    """Stop the warm Ray (its whole process group); the address it had, or None if none was up."""
    _usable_cache()
    state = _read()
    state_file().unlink(missing_ok=True)
    if state is None or not _alive(state["pid"]):
        return None
    stop_group(state["pid"])
    _forget_address(state["address"])
    return state["address"]


def _forget_address(where: str) -> None:
    """``ray start`` leaves its address where ``ray.init()`` looks for a Ray to join (as ``ray stop`` would,
    take it away, if it is still this one's): else another program's ``ray.init()`` tries the dead one."""
    try:
        from ray._private.utils import get_ray_address_file

        path = Path(get_ray_address_file(None))
        if path.read_text().strip() == where:
            path.unlink()
    except (ImportError, OSError):
        pass


def join_with_its_token() -> None:
    """A driver joining the warm Ray sends the user's token, as Ray does on its own only for a Ray it finds
    without being given its address (the warm one is always started with token authentication)."""
    if os.environ.get("RAY_AUTH_MODE"):
        return  # the user's own choice
    try:  # Ray's own switch (it also refreshes Ray's settings); private, so a Ray without it joins as is
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # pragma: no cover - another Ray
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def _names_in_group(pgid: int) -> set[str]:
    """The names of the processes in a process group (``raylet`` is there once Ray's node is up)."""
    names = set()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and os.getpgid(int(entry.name)) == pgid:
                names.add((entry / "comm").read_text().strip())
        except (OSError, ValueError):
            continue
    return names


def _alive(pid: int) -> bool:
    """``pid`` lives and is the warm Ray's ``ray start`` (a state file naming another process is not
    trusted: ``down`` would stop that process's group)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"ray.scripts.scripts" in cmdline and b"start" in cmdline and b"--head" in cmdline


def recorded() -> dict | None:
    """What ``hpsearch up`` recorded of the warm Ray (its address, process group, log), whether it lives."""
    return _read()


def _read() -> dict | None:
    try:
        state = json.loads(state_file().read_text())
        return state if isinstance(state.get("pid"), int) and isinstance(state.get("address"), str) else None
    except (OSError, ValueError, AttributeError):
        return None


def _usable_cache() -> Path:
    """The cache folder, made if need be; one line where it cannot be (a file, immutable, not the user's)."""
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".probe.{os.getpid()}"
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
        probe.unlink()
    except OSError as e:
        raise UserError(
            f"the cache folder {folder} cannot be used ({e.strerror or e}): the warm Ray's state lives there; "
            "set HPSEARCH_CACHE to a folder you can write",
            "HPSEARCH_CACHE" if os.environ.get("HPSEARCH_CACHE") else None,
        ) from None
    return folder


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (made, never followed as a link) for as long as the block runs."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _new_file(path: Path) -> IO[bytes]:
    """``path`` made anew for writing: what was there goes (a link is removed, never followed), and a link
    put there meanwhile is refused (``O_EXCL``): a link to another file never gets it overwritten."""
    path.unlink(missing_ok=True)
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600), "wb")


def _write(state: dict) -> None:
    path = state_file()
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    with _new_file(partial) as out:
        out.write(json.dumps(state).encode())
    os.replace(partial, path)

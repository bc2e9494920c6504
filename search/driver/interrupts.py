"""Ctrl-C and SIGTERM: one line and the shell's exit code (130, 143), never a traceback or a half-written store.

A command that writes (``run``, ``resume``) goes through three phases:

* ``interruptible``: imports, Ray's start. Nothing is written yet, so a signal ends the command at once
  (``KeyboardInterrupt``, or ``Terminated`` for SIGTERM) and the CLI says so in one line. A signal that
  lands where Python swallows exceptions (an at-fork hook inside Ray's start) is still remembered in
  ``received``.
* ``held``: the stores are set up, the study and the parent run opened, the sweep closed. A signal waits
  (it is listed) so each of those writes is made whole; the sweep starts no trial when one came.
* Ray Tune's loop in between, which stops its trials gracefully on SIGINT (and on SIGTERM, through
  ``runner.sigterm_stops_tune``), after which the sweep closes them. A signal that lands as Tune sets its
  loop up, before its own handler is there, is still held and listed: the searcher then asks no trial.

This room owns the signal state of the process (``received``, and whether a start was ``abandoned``):
other rooms tell it what they saw (``saw``, ``abandon``) and read it, never write its lists. A command
process that must end at once, Python's own exit skipped, ends through ``exit_now``, the one place of
the driver's process that calls ``os._exit`` (the MLflow writer, a process of its own, has its own).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator, NoReturn

SIGNALS = (signal.SIGINT, signal.SIGTERM)
received: list[int] = []  # every signal this command saw, in order (the handlers below, and ``saw``)
_abandoned: list[bool] = []  # a start-up abandoned half made (``abandon``)


def saw(signum: int) -> None:
    """A signal another room caught before these handlers could (Ray's own SIGTERM handler as it starts)."""
    received.append(signum)


def abandon() -> None:
    """A start-up was abandoned half made (Ray's start, interrupted): the process must end at once
    (``exit_now``); Python's own exit would tear down what is half made."""
    _abandoned.append(True)


def abandoned() -> bool:
    return bool(_abandoned)


def exit_now(code: int) -> NoReturn:
    """End the process with ``code`` at once, every output flushed, Python's exit hooks skipped: for a process
    whose libraries were left half made (interrupted mid-import, a Ray start abandoned, a Ray head lost), or
    whose teardown would only wait for what the command already closed."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where nothing else handles it: ends a command as Ctrl-C does (exit 143, not 130)."""


def has_children() -> bool:
    """Whether this process started others (Ray's, a writer): they must be shut down, not abandoned. Where
    /proc cannot tell, assume so."""
    try:
        return bool(children(strict=True))
    except OSError:
        return True


def children(pid: int | str = "self", strict: bool = False) -> set[int]:
    """A process's children, read off /proc. Where it cannot tell: those it could read, or with ``strict``
    the OSError."""
    from pathlib import Path

    found: set[int] = set()
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        if strict:
            raise
        return found
    for task in tasks:
        try:
            found.update(int(c) for c in (task / "children").read_text().split())
        except OSError:
            if strict:
                raise
    return found


def stop_group(pgid: int, patience: float = 20.0) -> None:
    """SIGTERM to a process group (a server and what it started, the warm Ray's ``ray start`` and its GCS,
    raylet and workers), then SIGKILL to what is left after ``patience`` seconds; returns once it is gone (or
    5 s after the SIGKILL)."""
    for sig, wait in ((signal.SIGTERM, patience), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _group_alive(pgid):
                return
            time.sleep(0.1)


def _group_alive(pgid: int) -> bool:
    try:  # reap the group's leader, should it be this process's child
        os.waitpid(pgid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def descendants(pids: set[int]) -> set[int]:
    """Every process below these: their children, theirs, and so on."""
    found: set[int] = set()
    todo = list(pids)
    while todo:
        below = children(todo.pop()) - found
        found |= below
        todo += below
    return found


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def interruptible() -> Iterator[None]:
    """A signal raises at once (KeyboardInterrupt, or Terminated for SIGTERM), and is remembered for this
    command (what an earlier command in the same process saw is forgotten)."""
    received.clear()
    if not _main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        received.append(signum)
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextmanager
def held() -> Iterator[list[int]]:
    """Signals wait: the list holds those that came (and any remembered from before, that Python swallowed;
    taken, so that a later sweep in the same process does not see them again)."""
    got: list[int] = list(received)
    received.clear()
    if not _main_thread():  # signal handlers live in the main thread
        yield got
        return

    def hold(signum: int, frame: Any) -> None:
        received.append(signum)
        got.append(signum)

    previous = {s: signal.signal(s, hold) for s in SIGNALS}
    try:
        yield got
    finally:
        for s, h in previous.items():
            signal.signal(s, h)

"""Where Ray falls short of what a sweep needs: each fix is small, named and tested (on Ray 2.60, the
version ``constraints.txt`` pins).

**A trial killed for memory fails alone.** Ray's memory monitor kills the worker of a trial that takes
the host's memory; the trial's pending call then fails with ``ray.exceptions.OutOfMemoryError``. That
error is a ``RayError`` but neither an actor error nor a task error, and Tune's actor manager
(``RayActorManager._actor_task_failed``, Ray 2.60) handles only those two: for anything else it raises
``RuntimeError("Caught unexpected exception")`` out of ``Tuner.fit``, which ends the whole sweep, its
trials after this one never run. The fix hands such an error on as what it is for the trial: its actor
is gone (``RayActorError``), so Tune fails that trial alone, cleans its actor up and goes on; the reason
(memory used, the limit) is kept as the error's last line, which is the line the progress, the study and
MLflow show.

**A local Ray listens on loopback only.** Ray binds its servers (GCS, raylet, workers) to the node's IP,
which it takes to be the machine's outward address unless clusters are switched off
(``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER``, read once when Ray is imported, on by default on Linux); then it
is 127.0.0.1. A sweep on one machine needs no other, so while this process starts its own Ray the switch
is off (in the environment, for the processes Ray starts, and in the constant Ray has already read).

**A local Ray starts only what a sweep uses.** ``ray.init()`` on one machine also starts the autoscaler's
monitor, which has nothing to scale, and, even when the driver does not print the workers' output
(``log_to_driver=False``, hpsearch's default), the log monitor, which reads every worker's log files all
the time so as to send them to the driver: a few seconds of CPU at start and a steady share of a core
after, taken from the trials. Neither is started for a Ray this process starts for itself (the log monitor
still is with ``HPSEARCH_RAY_LOGS=1``); a cluster's are untouched. Nor is the dashboard's API server, which
``include_dashboard=False`` still starts (for Ray's job and state APIs, which a sweep does not use) and
``ray.init()`` waits for: about a second before the first trial, and a Python process importing aiohttp
beside the driver at its busiest (a 1-trial sweep: 13.4 s, 10.3-11.7 s without it).

**A local Ray's trials run at the driver's priority.** Ray starts its workers at niceness 15, so that its
own processes stay responsive when the workers fill the cores. On a machine that runs anything else at
the usual priority (an editor, a build, another sweep's plain process), that leaves a trial's worker a
thirtieth of a core: measured with two busy loops on two cores, a new worker took 41 s to start and
import Ray Tune instead of 1.4 s, and a 3-trial no-op sweep 136 s. A Ray this process starts for itself
gives its workers niceness 0 (``RAY_worker_niceness``, a Ray setting; a value the user set is kept), as
plain Optuna's trials have. A sweep's own trials take no more from its driver for it (the throughput
benchmark recorded as many steps). This one is public: it needs no guard.

**Ray Tune's start imports no MLflow.** ``tune.run`` tags Ray's usage statistics with the kinds of
callbacks it was given, and to name them it imports every integration Ray ships (Ray 2.60's
``ray.air._internal.usage._count_callbacks``), MLflow's among them, which imports MLflow: 1.4 s of the
driver's CPU between ``Tuner.fit`` and the first trial, for a tag. hpsearch's callbacks are its own (Ray
would count them as custom); the tag is left out, and MLflow stays in the writer process.

**A trial's checkpoint does not save the whole experiment.** With ``CheckpointConfig(num_to_keep=...)``
(hpsearch keeps one checkpoint a trial), Tune saves the experiment's state, every trial's as JSON, and
copies it to the storage path after each checkpoint any trial takes (Ray 2.60's
``_ExperimentCheckpointManager.on_trial_checkpoint``), so that ``Tuner.restore`` never meets a checkpoint
that was deleted since. That is driver work which grows with the number of trials, on every checkpoint: no-op
trials that keep a checkpoint at each of their 10 steps cost the driver 227 ms a trial instead of 70 ms,
39% of its time in those saves (150 trials). hpsearch resumes a sweep from its study, never through
``Tuner.restore``; the experiment's state is still saved as Tune saves it otherwise (every 10 s at most,
in under 5% of the time) and when the sweep ends.

**The experiment's state is saved after its last copy ends.** Tune writes its state into a staging
folder and copies that folder to the storage path in the background; a save that follows soon after
(a sweep that ends as it starts: a Ctrl-C before its first trial) rewrites the folder while the copy still
reads it, which fails the copy (a file renamed away under it) and prints Ray's traceback. A save now
waits for the copy before it writes; a copy launched 10 s or more before has long ended.

All but the niceness reach into Ray's private modules. A Ray whose internals moved is run unpatched, with
one warning naming the fix that is off (``missing()`` says which): a trial killed for memory then ends the
sweep, a local Ray listens where Ray's default puts it, Ray Tune imports MLflow, every checkpoint saves the
experiment, and a save may race the copy before it.
"""

import functools
import importlib
import inspect
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ray.exceptions import OutOfMemoryError, RayActorError, RayError, RayTaskError

log = logging.getLogger(__name__)


def _private(module: str, name: str | None = None) -> Any:
    """A private piece of Ray (a module, or a name in it) where the Ray this was tested on has it; None in a
    Ray whose internals moved."""
    try:
        found = importlib.import_module(module)
    except ImportError:  # pragma: no cover - another Ray
        return None
    return found if name is None else getattr(found, name, None)


RayActorManager = _private("ray.air.execution._internal.actor_manager", "RayActorManager")
ray_constants = _private("ray._private.ray_constants")
RayParams = _private("ray._private.parameter", "RayParams")
Node = _private("ray._private.node", "Node")
air_usage = _private("ray.air._internal.usage")
_ExperimentCheckpointManager = _private("ray.tune.execution.experiment_state", "_ExperimentCheckpointManager")
# Ray's own hook, as it was before apply() (the tests put it back to show what the fix changes)
RAYS_ON_TRIAL_CHECKPOINT = getattr(_ExperimentCheckpointManager, "on_trial_checkpoint", None)

MEMORY_FIX, LOOPBACK_FIX = "a trial killed for memory fails alone", "a local Ray listens on loopback only"
LEAN_FIX = "a local Ray starts no autoscaler, log monitor or dashboard server"
TAG_FIX = "Ray Tune's start imports no MLflow"
CHECKPOINT_FIX = "a trial's checkpoint does not save the whole experiment"
SAVE_FIX = "the experiment's state is saved after its last copy ends"
WORKER_NICENESS = "RAY_worker_niceness"  # Ray's setting (RayConfig worker_niceness, 15 unless set)
_warned: set[str] = set()


def missing() -> list[str]:
    """The fixes this Ray cannot take (the private names they use moved): the sweep runs without them."""
    out = []
    if RayActorManager is None or not callable(getattr(RayActorManager, "_actor_task_failed", None)):
        out.append(MEMORY_FIX)
    names = ("ENABLE_RAY_CLUSTERS_ENV_VAR", "ENABLE_RAY_CLUSTER")
    if ray_constants is None or not all(hasattr(ray_constants, n) for n in names):
        out.append(LOOPBACK_FIX)
    takes = inspect.signature(RayParams.__init__).parameters if RayParams is not None else {}
    api_server = getattr(Node, "start_api_server", None)
    if not {"no_monitor", "include_log_monitor"} <= set(takes) or not callable(api_server):
        out.append(LEAN_FIX)
    if air_usage is None or not callable(getattr(air_usage, "tag_callbacks", None)):
        out.append(TAG_FIX)
    if _ExperimentCheckpointManager is None or not callable(
        getattr(_ExperimentCheckpointManager, "on_trial_checkpoint", None)
    ):
        out.append(CHECKPOINT_FIX)
    if _ExperimentCheckpointManager is None or not callable(
        getattr(_ExperimentCheckpointManager, "sync_up_experiment_state", None)
    ):
        out.append(SAVE_FIX)
    return out


def _warn_once(fix: str) -> None:
    if fix not in _warned:
        _warned.add(fix)
        log.warning("this Ray's internals are not Ray 2.60's: running without the fix '%s' (ray_patches.py)", fix)


class WorkerLost(RayActorError):
    """A trial's worker is gone for a reason Ray reports as neither an actor nor a task error."""

    def __init__(self, cause: RayError):
        super().__init__(error_msg=f"{cause}\n{summary(cause)}")
        self.__cause__ = cause


def summary(error: RayError) -> str:
    """One line for the trial's failure: what happened, with the memory figures where Ray gave them."""
    if isinstance(error, OutOfMemoryError):
        used = re.search(r"was ([\d.]+\s*\w+ used / [\d.]+\s*\w+ limit)", " ".join(str(error).split()))
        figures = f" ({used.group(1)})" if used else ""
        return (
            f"killed by Ray's memory monitor: the host ran low on memory{figures}; "
            "give each trial less data or model, or fewer trials at a time"
        )
    first = str(error).strip().splitlines()
    return f"the trial's worker was lost: {type(error).__name__}: {first[0] if first else 'no message'}"


def _fail_the_trial_alone(original):
    def _actor_task_failed(self, tracked_actor_task, exception):
        if isinstance(exception, RayError) and not isinstance(exception, (RayActorError, RayTaskError)):
            exception = WorkerLost(exception)
        return original(self, tracked_actor_task, exception)

    _actor_task_failed.hpsearch_patched = True
    return _actor_task_failed


@contextmanager
def local_only(log_to_driver: bool = False) -> Iterator[None]:
    """A ``ray.init()`` without an address inside starts a Ray that listens on 127.0.0.1 only, with no
    autoscaler monitor and (unless ``log_to_driver``) no log monitor, whose workers run at niceness 0. All is
    put back after: a Ray node or cluster this process starts or joins later is not touched."""
    with _loopback(), _lean(log_to_driver), _set_env(WORKER_NICENESS, _worker_niceness()):
        yield


def local_env() -> dict[str, str]:
    """What ``hpsearch up``'s ``ray start`` takes from ``local_only``: loopback, workers at niceness 0."""
    env = {WORKER_NICENESS: _worker_niceness()}
    if LOOPBACK_FIX not in missing():
        env[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = "0"
    return env


def _worker_niceness() -> str:
    return os.environ.get(WORKER_NICENESS, "0")  # the user's, else the driver's own (0)


@contextmanager
def _set_env(name: str, value: str) -> Iterator[None]:
    saved = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved


@contextmanager
def _loopback() -> Iterator[None]:
    if LOOPBACK_FIX in missing():
        _warn_once(LOOPBACK_FIX)
        yield
        return
    saved_constant, ray_constants.ENABLE_RAY_CLUSTER = ray_constants.ENABLE_RAY_CLUSTER, False
    try:
        with _set_env(ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR, "0"):
            yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_constant


@contextmanager
def _lean(log_to_driver: bool) -> Iterator[None]:
    if LEAN_FIX in missing():
        _warn_once(LEAN_FIX)
        yield
        return
    original, api_server = RayParams.__init__, Node.start_api_server

    def init(self, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.no_monitor = True
        if not log_to_driver:
            self.include_log_monitor = False

    def no_api_server(self: Any, **options: Any) -> None:
        self._webui_url = None  # what Ray's own start leaves when the server fails to start

    RayParams.__init__, Node.start_api_server = init, no_api_server
    try:
        yield
    finally:
        RayParams.__init__, Node.start_api_server = original, api_server


def apply() -> None:
    """Install the trial fixes in this process (the driver); calling it again changes nothing."""
    cannot = missing()
    if TAG_FIX in cannot:
        _warn_once(TAG_FIX)
    else:
        air_usage.tag_callbacks = _no_callback_tag
    if CHECKPOINT_FIX in cannot:
        _warn_once(CHECKPOINT_FIX)
    else:
        _ExperimentCheckpointManager.on_trial_checkpoint = _no_forced_save
    if SAVE_FIX in cannot:
        _warn_once(SAVE_FIX)
    elif not getattr(_ExperimentCheckpointManager.sync_up_experiment_state, "hpsearch_patched", False):
        _ExperimentCheckpointManager.sync_up_experiment_state = _save_after_the_last_copy(
            _ExperimentCheckpointManager.sync_up_experiment_state
        )
    if MEMORY_FIX in cannot:
        _warn_once(MEMORY_FIX)
        return
    current = RayActorManager._actor_task_failed
    if not getattr(current, "hpsearch_patched", False):
        RayActorManager._actor_task_failed = _fail_the_trial_alone(current)


def _no_callback_tag(callbacks: Any) -> bool:
    """Ray's ``tag_callbacks``, which recorded nothing: as Ray's does when it records nothing."""
    return False


def _save_after_the_last_copy(sync_up: Any) -> Any:
    """Tune's ``sync_up_experiment_state``, whose save (``save_fn``, called when a save is due) first waits
    for the copy the save before launched."""

    @functools.wraps(sync_up)
    def sync_up_after_the_last_copy(self: Any, save_fn: Any, *args: Any, **kwargs: Any) -> Any:
        def save() -> None:
            syncer = getattr(getattr(self, "_storage", None), "syncer", None)
            try:
                if syncer is not None:
                    syncer.wait()
            except Exception as e:  # noqa: BLE001 - that copy's failure; this save and its copy go on
                log.warning("copying Ray Tune's experiment state to the storage path failed: %s", e)
            save_fn()

        return sync_up(self, save, *args, **kwargs)

    sync_up_after_the_last_copy.hpsearch_patched = True  # type: ignore[attr-defined]
    return sync_up_after_the_last_copy


def _no_forced_save(self: Any, trial: Any) -> None:
    """Tune's hook after a trial's checkpoint, which counts it towards forcing a save of the whole
    experiment's state: nothing is counted, and the state is saved on Tune's own schedule."""

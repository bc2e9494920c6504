"""The Ray side of the trainable contract: a Session that reports through ``ray.tune.report``, and the group
session of a fused trial (several configurations trained as one, trainables/fused.py).

A fused group's report is one flat result: the members' metrics as ``members/<i>/<metric>``, the members
whose last report it is in ``final_members``, failed members' reasons as ``failed_members/<i>``, and the
checkpoints of the members that end there as ``member-<i>.pt`` in one Ray checkpoint. The driver tells
the worker which members it pruned through a ``StopBoard`` actor; they leave the group at its next step.
"""

from __future__ import annotations

import functools
import gc
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import ray
from ray import tune

from search.names import (
    CHECKPOINT_FILE,
    ELAPSED_KEY,
    FAILED_PREFIX,
    FINAL_KEY,
    FINAL_MEMBERS_KEY,
    KEPT_KEY,
    MEMBERS_KEY,
    MEMBERS_PREFIX,
    NODE_KEY,
    STEP_KEY,
    member_checkpoint_file,
)
from trainables import registry
from trainables.session import Checkpoint, CheckpointKeeper, TrialClock, materialize, plain

if TYPE_CHECKING:  # torch is imported where a trial runs: the driver never needs it for a plain trainable
    import torch


@ray.remote(num_cpus=0)
class StopBoard:
    """Which members of which fused group the driver has pruned: the workers read it at every step."""

    def __init__(self) -> None:
        self._stopped: dict[str, set[int]] = {}

    def stop(self, group: str, members: list[int]) -> None:
        self._stopped.setdefault(group, set()).update(members)

    def stopped(self, group: str) -> list[int]:
        return sorted(self._stopped.get(group, ()))


class _DeviceOnDemand:
    """``session.device``, made when a trainable first asks for it: torch is imported then (about 1.5 s), so a
    trainable that never uses torch (a scikit-learn model, a no-op) does not wait for it."""

    _make_device: Callable[[], torch.device]

    @functools.cached_property
    def device(self) -> torch.device:
        return self._make_device()


class RaySession(_DeviceOnDemand, TrialClock):
    def __init__(
        self,
        device: Callable[[], torch.device],
        budget_s: float | None,
        report_interval_s: float | None,
        keeper: CheckpointKeeper | None = None,
    ) -> None:
        TrialClock.__init__(self, budget_s)
        self._make_device = device
        self.keeper = keeper or CheckpointKeeper(None, None, "last")
        self.report_interval_s = report_interval_s
        self.node_id = ray.get_runtime_context().get_node_id()

    def report(
        self, step: int, metrics: dict[str, float], checkpoint: Checkpoint | None = None, final: bool = False
    ) -> None:
        # elapsed_s is the trial's own clock (from ``start_clock``, after imports and data set-up, or from
        # the session's start for a trainable that never calls it): the trial budget is enforced on it.
        metrics = plain(metrics)
        payload = {**metrics, STEP_KEY: step, ELAPSED_KEY: time.monotonic() - self.started, NODE_KEY: self.node_id}
        if final:
            payload[FINAL_KEY] = True
        # Ray keeps one checkpoint a trial (num_to_keep=1): the last one sent, so only a kept one is sent.
        if checkpoint is None or not self.keeper.wants(step, metrics):
            tune.report(payload)
            return
        payload[KEPT_KEY] = True
        with tempfile.TemporaryDirectory() as tmp:
            import torch

            torch.save(materialize(checkpoint), Path(tmp) / CHECKPOINT_FILE)
            tune.report(payload, checkpoint=tune.Checkpoint.from_directory(tmp))

    def restore(self) -> dict[str, Any] | None:
        checkpoint = tune.get_checkpoint()
        if checkpoint is None:
            return None
        with checkpoint.as_directory() as d:
            import torch

            return torch.load(Path(d) / CHECKPOINT_FILE, map_location=self.device, weights_only=False)


class RayGroupSession(_DeviceOnDemand):
    """A fused group's session (``trainables.session.GroupSession``) inside a Ray trial."""

    def __init__(
        self, device: Callable[[], torch.device], board: Any, keeper: Callable[[], CheckpointKeeper] | None = None
    ) -> None:
        self._make_device = device
        self._keeper = keeper or (lambda: CheckpointKeeper(None, None, "last"))
        self.keepers: dict[int, CheckpointKeeper] = {}
        self.report_interval_s = None
        self.started = time.monotonic()
        self.node_id = ray.get_runtime_context().get_node_id()
        self.group = tune.get_context().get_trial_id()
        self._board = board

    def report(
        self,
        step: int,
        metrics: dict[int, dict[str, float]],
        checkpoints: dict[int, Checkpoint] | None = None,
        final: set[int] = frozenset(),
        failed: dict[int, str] | None = None,
    ) -> None:
        payload: dict[str, Any] = {STEP_KEY: step, ELAPSED_KEY: time.monotonic() - self.started, NODE_KEY: self.node_id}
        metrics = {member: plain(values) for member, values in metrics.items()}
        for member, values in metrics.items():
            payload |= {f"{MEMBERS_PREFIX}{member}/{k}": v for k, v in values.items()}
        payload[FINAL_MEMBERS_KEY] = sorted(final)
        payload |= {f"{FAILED_PREFIX}{member}": reason for member, reason in (failed or {}).items()}
        checkpoints = {
            m: c
            for m, c in (checkpoints or {}).items()
            if self.keepers.setdefault(m, self._keeper()).wants(step, metrics.get(m, {}))
        }
        payload |= {f"{MEMBERS_PREFIX}{m}/{KEPT_KEY}": True for m in checkpoints}
        if not checkpoints:
            tune.report(payload)
            return
        import torch

        with tempfile.TemporaryDirectory() as tmp:
            for member, state in checkpoints.items():
                torch.save(materialize(state), Path(tmp) / member_checkpoint_file(member))
            tune.report(payload, checkpoint=tune.Checkpoint.from_directory(tmp))

    def stopped(self) -> set[int]:
        return set(ray.get(self._board.stopped.remote(self.group))) if self._board is not None else set()

    def time_left(self) -> float | None:
        return None


class _BytesTo:
    """A text stream's ``buffer``: bytes written here go to the text stream, decoded as it encodes them."""

    def __init__(self, text: Any) -> None:
        self.text = text

    def write(self, data: bytes) -> int:
        self.text.write(bytes(data).decode(getattr(self.text, "encoding", None) or "utf-8", errors="replace"))
        return len(data)

    def flush(self) -> None:
        self.text.flush()


class TrialStream:
    """A worker's ``sys.stdout`` or ``sys.stderr`` while trials run: one object for the worker's life, writing
    to the trial that runs now. Ray Tune gives each trial its own stream (a ``Tee`` of the worker's output and
    the trial's log file) and closes it when the trial ends; a worker it reuses runs the next trial. A
    logging handler or a library that took ``sys.stderr`` when a trial first imported it (Lightning's "Seed
    set to ...") holds this object, so its lines land in the log of the trial that runs when it writes, not
    in a closed stream of the first one. Between trials it writes to the worker's own output. It has the
    ``buffer`` a text stream has, so a trainable that writes bytes works under ``run`` as under ``train``."""

    def __init__(self, idle: Any) -> None:
        self._idle = idle  # the worker's own stream, written between trials
        self.target = idle
        self.buffer = _BytesTo(self)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.target, name)

    def write(self, text: str) -> int:
        return self.target.write(text)

    def flush(self) -> None:
        self.target.flush()

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:
        return getattr(self.target, "encoding", None) or "utf-8"

    def attach(self, stream: Any) -> None:
        self.target = self._idle if stream is self or stream is None else stream

    def detach(self) -> None:
        try:
            self.target.flush()
        except ValueError:  # closed already
            pass
        self.target = self._idle


_STREAMS: dict[str, TrialStream] = {}


@contextmanager
def trial_streams() -> Iterator[None]:
    """``sys.stdout`` and ``sys.stderr`` are this worker's ``TrialStream``s while the trial runs, pointed at
    the trial's own streams; afterwards at the worker's own output, and ``sys`` as Ray Tune left it."""
    saved = sys.stdout, sys.stderr
    out = _STREAMS.setdefault("stdout", TrialStream(sys.__stdout__))
    err = _STREAMS.setdefault("stderr", TrialStream(sys.__stderr__))
    out.attach(sys.stdout)
    err.attach(sys.stderr)
    sys.stdout, sys.stderr = out, err
    try:
        yield
    finally:
        out.detach()
        err.detach()
        sys.stdout, sys.stderr = saved


def free_gpu_memory() -> None:
    """Ray Tune may run the next trial in this worker: the finished trial's tensors are unreachable now, and
    the GPU memory PyTorch cached for them goes back to the device (for the next trial, or another process
    sharing the GPU under fractional ``resources.gpu``). Nothing when torch never touched CUDA here."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        return
    gc.collect()
    torch.cuda.empty_cache()


def trial_function(
    trainable_name: str,
    metric: str,
    mode: str,
    value_rule: str,
    cpus: float,
    gpus: float,
    budget_s: float | None,
    report_interval_s: float | None,
    board: Any = None,
) -> Callable[[dict], None]:
    """The Ray Tune function trainable for one registered trainable (or a user's ``file.py:fn``).

    The driver's plugin modules and import path travel with the function, so a worker on any node finds
    the same trainables as the driver did, whatever its environment. A trial runs in the directory where
    ``hpsearch run`` was started (where that directory exists on the worker's node), so a relative path
    in a user's code or hyperparameters means what it meant to the user; Ray's trial directory holds
    the trial's results and logs, not its working directory.
    """
    plugins = registry.plugin_modules()
    launch_dir = os.getcwd()
    import_path = [launch_dir, *registry.user_import_dirs]

    def run_trial(config: dict) -> None:
        if Path(launch_dir).is_dir():
            os.chdir(launch_dir)
        sys.path[:0] = [p for p in import_path if p not in sys.path]
        registry.load_plugins(plugins)

        def device() -> torch.device:
            import torch

            torch.set_num_threads(max(1, int(cpus)))  # as Ray's OMP_NUM_THREADS, should torch come first
            return torch.device("cuda" if gpus > 0 and torch.cuda.is_available() else "cpu")

        def keeper() -> CheckpointKeeper:  # the checkpoint that scored the trial's value (value: best | last)
            return CheckpointKeeper(metric, mode, value_rule)

        try:
            with trial_streams():
                if MEMBERS_KEY in config:  # a fused group: several configurations trained as one
                    session = RayGroupSession(device, board, keeper)
                    registry.get(trainable_name).run_group(config[MEMBERS_KEY], session)
                    return
                session = RaySession(device, budget_s, report_interval_s, keeper())
                registry.get(trainable_name).run(config, session, metric)
        finally:  # the driver copies the trial's stdout/stderr files when it ends: they must be complete
            sys.stdout.flush()
            sys.stderr.flush()
            free_gpu_memory()

    run_trial.__name__ = registry.short_name(trainable_name)
    return run_trial

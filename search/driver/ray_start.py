"""A sweep's Ray: a cluster's (``--address``), the warm one ``hpsearch up`` keeps (warm_ray.py), or one of the
driver's own, started for this machine and stopped when the driver ends; with the settings Ray, Tune, Optuna
and MLflow need in a sweep's driver. A start interrupted half way leaves no process behind.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import warnings
from contextlib import nullcontext, suppress

import optuna
import ray

from search.driver import interrupts, ray_patches, warm_ray
from search.errors import UnreachableError


def engine_settings() -> None:
    """Ray, Tune, Optuna and MLflow set up for a sweep's driver: done once where a sweep starts
    (``ensure_ray``), not when this module is imported. ``setdefault``: a user's own setting wins."""
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    # A trial that does not report the metric fails alone, with the reason (OptunaBridge.report), instead
    # of Ray's strict check ending the whole sweep.
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    # Checkpoints are small and frequent here; Ray's advice about snapshot frequency is noise to a user.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # hpsearch prints its own progress; Ray's experiment banner and its token notice are noise here.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # Results live in the study and MLflow, so Ray's per-trial result files (and its warning that it
    # cannot read them back) are not needed.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    # A failed trial is one line on the terminal (the progress callback) and a traceback in its logs;
    # Ray's own full traceback in the driver's output would bury the sweep's progress.
    for name in ("ray.tune.execution.tune_controller", "ray.tune.tune"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def ensure_ray(address: str | None = None) -> str | None:
    """Ray for this driver: ``address``'s cluster, else the warm Ray ``hpsearch up`` keeps (its address is
    returned), else a Ray of its own for this machine, stopped when the driver ends."""
    engine_settings()
    if ray.is_initialized():
        return None
    warm = None
    if not address and not os.environ.get("RAY_ADDRESS"):
        address = warm = warm_ray.address()  # hpsearch up's Ray, when one is up: attached in about a second
    local = not address and not os.environ.get("RAY_ADDRESS")
    if local or warm:
        # Ray turns token authentication on for a local start and warns of it each time: that tells a local
        # user nothing (a cluster's driver still hears it).
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    if warm:
        warm_ray.join_with_its_token()
    # ray.init makes SIGTERM a SystemExit anywhere in the driver; the driver keeps its own handling
    sigterm = signal.getsignal(signal.SIGTERM)
    logs = os.environ.get("HPSEARCH_RAY_LOGS", "0") == "1"
    before = interrupts.children()  # the MLflow writer, a dashboard: not Ray's to stop
    try:
        # A Ray started here, or the warm one, serves this machine: on 127.0.0.1 (which Ray would otherwise
        # turn into the machine's outward address when joining it)
        with ray_patches.local_only(logs) if local or warm else nullcontext():
            ray.init(
                # "local": a Ray of its own even where `ray start` (or hpsearch up) left its address for
                # ray.init() to find
                address="local" if local else address,
                num_cpus=None if address else os.cpu_count(),
                include_dashboard=False,
                log_to_driver=logs,
                logging_level=logging.WARNING,
                configure_logging=True,
            )
    except SystemExit as e:  # Ray's own SIGTERM handler while it starts: sys.exit(15)
        if e.code != signal.SIGTERM:
            raise
        interrupts.saw(signal.SIGTERM)
        _abandon_start(before)
        raise interrupts.Terminated() from None
    except KeyboardInterrupt:
        _abandon_start(before)
        raise
    except (ConnectionError, RuntimeError, ValueError) as e:
        if not address:
            raise
        text = "\n".join(str(c) for c in (e, e.__cause__, getattr(e.__cause__, "__cause__", None)) if c)
        if "InvalidAuthToken" in text:  # Ray wraps the reason twice, as text
            message = "its authentication token is missing or wrong here (set RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH)"
        else:
            message = (text.strip() or type(e).__name__).splitlines()[0]
        raise UnreachableError(f"cannot join the Ray cluster at {address}: {message}", "--address") from None
    finally:
        if sigterm is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, sigterm)
    return warm


def _abandon_start(before: set[int]) -> None:
    """Ray's start, interrupted: the processes it started (this process's children that were not there
    before it, and theirs) are killed now, and its own exit hook is not run. Interrupted as its core worker
    connected, Python's exit crashed tearing it down (SIGABRT or SIGSEGV after the command's one line);
    interrupted earlier, the raylet's agents outlived it by a minute."""
    import atexit

    started = interrupts.children() - before
    for pid in [*interrupts.descendants(started), *started]:
        with suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    for pid in started:
        with suppress(ChildProcessError):
            os.waitpid(pid, 0)
    worker = getattr(getattr(ray, "_private", None), "worker", None)  # private (search/private_parts.py)
    if worker is not None and hasattr(worker, "_global_node"):
        worker._global_node = None  # its processes are gone: nothing for Ray to stop
    atexit.unregister(ray.shutdown)
    interrupts.abandon()

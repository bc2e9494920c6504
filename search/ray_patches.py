"""Where Ray Tune, as installed, would lose a sweep over one trial: each fix is small, named and tested.

Ray's memory monitor kills the worker of a trial that takes the host's memory; the trial's pending call
then fails with ``ray.exceptions.OutOfMemoryError``. That error is a ``RayError`` but neither an actor
error nor a task error, and Tune's actor manager (``RayActorManager._actor_task_failed``, Ray 2.60)
handles only those two: for anything else it raises ``RuntimeError("Caught unexpected exception")``
out of ``Tuner.fit``, which ends the whole sweep, its trials after this one never run. The fix hands
such an error on as what it is for the trial: its actor is gone (``RayActorError``), so Tune fails that
trial alone, cleans its actor up and goes on; the reason (memory used, the limit) is kept as the
error's last line, which is the line the progress, the study and MLflow show.
"""

import re

from ray.air.execution._internal.actor_manager import RayActorManager
from ray.exceptions import OutOfMemoryError, RayActorError, RayError, RayTaskError


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


def apply() -> None:
    """Install the fixes in this process (the driver); calling it again changes nothing."""
    current = RayActorManager._actor_task_failed
    if not getattr(current, "hpsearch_patched", False):
        RayActorManager._actor_task_failed = _fail_the_trial_alone(current)

"""The names shared across processes and stores: one place for each, so that what one side writes the
other reads under the same name. A leaf module: it imports nothing of hpsearch's, nor Ray, Optuna or
MLflow, so the worker, the driver, the writer and the read-only commands can all take it.

Three kinds:

* keys of a trial's **result** (what a worker reports through Ray, ``ray_session.py``, and the driver
  reads, ``optuna_bridge.py`` and ``tracking.py``), and the fused members' keys in it;
* **user attributes** of study trials (Optuna), which ``best``, ``compare``, ``export`` and ``resume``
  read back;
* **tags** of MLflow runs.
"""

from __future__ import annotations

import posixpath
import re
from typing import Any

# -- a trial's result, as a worker reports it ------------------------------------------------------------

CHECKPOINT_FILE = "checkpoint.pt"  # a kept checkpoint's file, in Ray's checkpoint and in the MLflow run
STEP_KEY = "step"  # the trainable's own step number (1 is its first report)
ELAPSED_KEY = "elapsed_s"  # the trial's own clock at this report (session.start_clock)
NODE_KEY = "node_id"  # the Ray node the trial ran on
FINAL_KEY = "final_report"  # the trainable's last report (never pruned there)
MEMBERS_KEY = "members"  # a fused group's config: {"members": [config, ...]}
MEMBERS_PREFIX = "members/"  # a group's result: members/<i>/<metric>
FINAL_MEMBERS_KEY = "final_members"
FAILED_PREFIX = "failed_members/"
# This step's checkpoint was kept (it replaced the trial's or member's kept one). A bool, so MLflow logs it
# as no metric; the bridge records the step and its metrics as the checkpoint's.
KEPT_KEY = "checkpoint_kept"
# What the session adds to every report beside the trainable's metrics. The driver adds Ray Tune's own keys
# to these (trial_records.NOT_METRICS); elapsed_s alone is also logged to MLflow, as each step's time.
SESSION_KEYS = frozenset({STEP_KEY, ELAPSED_KEY, NODE_KEY, FINAL_KEY, KEPT_KEY})


def member_checkpoint_file(member: int) -> str:
    return f"member-{member}.pt"


def member_results(result: dict[str, Any]) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
    """A group's result split into what all members share (step, elapsed_s, ...) and each member's metrics."""
    common: dict[str, Any] = {}
    members: dict[int, dict[str, Any]] = {}
    for key, value in result.items():
        if key.startswith(MEMBERS_PREFIX):
            member, _, name = key[len(MEMBERS_PREFIX) :].partition("/")
            members.setdefault(int(member), {})[name] = value
        else:
            common[key] = value
    return common, members


def member_failures(common: dict[str, Any]) -> dict[int, str]:
    """The failed members' reasons, taken out of a group result's shared part (``member_results``)."""
    return {int(k[len(FAILED_PREFIX) :]): str(common.pop(k)) for k in list(common) if k.startswith(FAILED_PREFIX)}


# -- the driver's key for one configuration: a Ray trial, or one member of a fused group (RAYID#MEMBER) ----


def member_key(ray_trial_id: str, member: int) -> str:
    return f"{ray_trial_id}#{member}"


def ray_trial_of(key: str) -> str:
    """The Ray trial a key belongs to: itself, or the group of a member's key."""
    return key.partition("#")[0]


# -- user attributes of a study trial ----------------------------------------------------------------------

RUN_ID_ATTR = "mlflow_run_id"  # its MLflow run; with repeats one per seed: mlflow_run_id.seed<N>
PARENT_ATTR = "mlflow_parent_run_id"  # the parent run of the `hpsearch run` that asked it
RAY_TRIAL_ATTR = "ray_trial_id"
STOPPED_ATTR = "stopped"  # why it ended early: interrupted, driver lost, sweep budget, trial budget, ...
HEAD_LOST = "Ray's head lost"  # (a STOPPED_ATTR) the sweep's Ray went away under it: run again on resume
FAIL_REASON_ATTR = "fail_reason"
REASON_ATTR = "reason"  # why a trial that did not fail ended as it did (pruned, ...)
RERUN_OF_ATTR = "rerun_of"  # resume ran this trial's configuration again as this one
VALUE_STEP_ATTR = "value_step"  # the step whose report gave its value
CHECKPOINT_STEP_ATTR = "checkpoint_step"  # the step whose weights its checkpoint holds
CHECKPOINT_METRICS_ATTR = "checkpoint_metrics"  # what that step reported
PRUNED_AT_ATTR = "pruned_at_step"  # the step at which the pruner stopped it
FEASIBLE_ATTR = "feasible"  # a trial with constraints: whether all held on its final values
REPEAT_VALUES_ATTR = "repeat_values"  # with repeats: each seed's value, in seed order (None: it failed)
VALUE_STD_ATTR = "value_std"  # with repeats: the standard deviation of its seeds' values


def run_id_attr(repeat: int | None) -> str:
    return RUN_ID_ATTR if repeat is None else f"{RUN_ID_ATTR}.seed{repeat}"


# -- tags of MLflow runs -----------------------------------------------------------------------------------

ROLE_TAG = "hpsearch.role"  # "sweep" on a parent run
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own: a trial run's parent (the sweep's run)
PRUNED_TAG = "pruned"  # "true" on a pruned trial's run
PRUNED_AT_TAG = PRUNED_AT_ATTR
FEASIBLE_TAG = FEASIBLE_ATTR
TRIAL_NUMBER_TAG = "optuna.trial_number"
STATE_TAG = "optuna.state"
RAY_TRIAL_TAG = "ray.trial_id"
REPEAT_TAG = "repeat"
ERROR_TAG = "error"
STOPPED_TAG = "stopped"
CHECKPOINT_STEP_TAG = "checkpoint_step"
CHECKPOINT_DIR = "checkpoint"  # a trial run's artifact folder for its kept checkpoint (CHECKPOINT_FILE)
CHECKPOINT_ARTIFACT = posixpath.join(CHECKPOINT_DIR, CHECKPOINT_FILE)  # what best and export read back
# The trial's value (the study's, for this seed): a number, or a JSON list of a trade-off's; and its step.
VALUE_TAG = "hpsearch.value"
VALUE_STEP_TAG = "hpsearch.value_step"
# The metrics its trainable reported under names MLflow refuses, and the names they are logged under (JSON).
RENAMED_TAG = "hpsearch.renamed_metrics"


# -- names MLflow takes for a metric, a parameter or a tag -------------------------------------------------

MLFLOW_NAME_CHARS = 250  # MLflow's longest key
_NOT_MLFLOW_CHAR = re.compile(r"[^/\w.\- :]")  # MLflow's own rule (mlflow.utils.validation), on POSIX


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested mapping as dotted keys: a run's parameter names (the parent's of the space file, a trial's
    of its config)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out |= flatten(v, f"{key}.")
        else:
            out[key] = v
    return out


def mlflow_name_problem(name: str) -> str | None:
    """Why MLflow would refuse ``name`` as a metric, parameter or tag key (it refuses the whole batch the
    name is in), or None when it takes it. The rule is MLflow's, written here so that the driver, which
    imports no MLflow, judges a name before anything is written."""
    if not name:
        return "it is empty"
    if len(name) > MLFLOW_NAME_CHARS:
        return f"it is {len(name):,} characters long; MLflow takes at most {MLFLOW_NAME_CHARS}"
    if bad := _NOT_MLFLOW_CHAR.search(name):
        return (
            f"MLflow takes no {bad.group()!r} in a name (only letters, digits, underscores, dashes, periods, spaces, "
            "colons and slashes)"
        )
    norm = posixpath.normpath(name)
    if norm != name or norm == "." or norm.startswith(("..", "/")):
        return f"MLflow takes no name that is a path leading elsewhere (it would read as {norm!r})"
    return None


def mlflow_name(name: str) -> str:
    """A name MLflow takes, as close to ``name`` as can be: each character it refuses becomes ``_``, a path
    that leads elsewhere is made plain, and a name over MLflow's length is cut (with a hash of the whole,
    so two long names stay two)."""
    if mlflow_name_problem(name) is None:
        return name
    mapped = _NOT_MLFLOW_CHAR.sub("_", name)
    mapped = "/".join(part if part not in ("", ".", "..") else "_" * max(len(part), 1) for part in mapped.split("/"))
    if len(mapped) > MLFLOW_NAME_CHARS:
        import hashlib

        digest = hashlib.sha1(name.encode("utf-8", "surrogatepass")).hexdigest()[:10]
        mapped = f"{mapped[: MLFLOW_NAME_CHARS - 11]}-{digest}"
    return mapped

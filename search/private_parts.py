"""Every private part of Ray, Optuna and MLflow that hpsearch reaches, in one list: what, from where, why,
and what a version where it moved gets instead. Each place that reaches one checks that it is there and
falls back when it is not (slower, or without one fix), so another version runs; ``tests/test_private_parts.py``
checks that every one is there on the versions ``constraints.txt`` pins, so a new pin that moves one fails
that test, naming it, rather than quietly running the fallback.

``what`` is ``module:Name.attr``; ``module:Class#attr`` is an attribute each instance of the class is given
in its own code (``self.attr = ...``). This module imports nothing until ``missing()`` is called.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass


@dataclass(frozen=True)
class Reach:
    what: str
    where: str  # the hpsearch module that reaches it
    why: str
    without: str  # what a version without it gets

    def present(self) -> bool:
        module, _, path = self.what.partition(":")
        try:
            found: object = importlib.import_module(module)
        except ImportError:
            return False
        if not path:
            return True
        names, _, instance_attr = path.partition("#")
        for name in names.split("."):
            if not hasattr(found, name):
                return False
            found = getattr(found, name)
        if instance_attr:
            try:
                source = inspect.getsource(found)  # type: ignore[arg-type]
            except (OSError, TypeError):
                return False
            return f"self.{instance_attr} =" in source or f"self.{instance_attr}:" in source
        return True


_RAY_FIX = "ray_patches.missing() names the fix that is off; the sweep runs without it, with one warning"
_RDB = "optuna.storages._rdb"
_SQL_STORE = "mlflow.store.tracking.sqlalchemy_store:SqlAlchemyStore"

REACHES: tuple[Reach, ...] = (
    # -- Ray ---------------------------------------------------------------------------------------------
    Reach(
        "ray.air.execution._internal.actor_manager:RayActorManager._actor_task_failed",
        "driver/ray_patches.py",
        "a trial killed for the host's memory fails alone, not the sweep",
        _RAY_FIX,
    ),
    Reach(
        "ray._private.ray_constants:ENABLE_RAY_CLUSTER",
        "driver/ray_patches.py",
        "a local Ray listens on loopback only",
        _RAY_FIX,
    ),
    Reach(
        "ray._private.ray_constants:ENABLE_RAY_CLUSTERS_ENV_VAR",
        "driver/ray_patches.py",
        "a local Ray listens on loopback only",
        _RAY_FIX,
    ),
    Reach(
        "ray._private.parameter:RayParams.__init__",
        "driver/ray_patches.py",
        "a local Ray starts no autoscaler monitor or log monitor (its no_monitor, include_log_monitor)",
        _RAY_FIX,
    ),
    Reach(
        "ray._private.node:Node.start_api_server",
        "driver/ray_patches.py",
        "a local Ray starts no dashboard API server",
        _RAY_FIX,
    ),
    Reach(
        "ray.air._internal.usage:tag_callbacks", "driver/ray_patches.py", "Ray Tune's start imports no MLflow", _RAY_FIX
    ),
    Reach(
        "ray.tune.execution.experiment_state:_ExperimentCheckpointManager.on_trial_checkpoint",
        "driver/ray_patches.py",
        "a trial's checkpoint does not save the whole experiment",
        _RAY_FIX,
    ),
    Reach(
        "ray.tune.execution.experiment_state:_ExperimentCheckpointManager.sync_up_experiment_state",
        "driver/ray_patches.py",
        "the experiment's state is saved after its last copy ends",
        _RAY_FIX,
    ),
    Reach(
        "ray._private.worker:_global_node",
        "driver/ray_start.py, driver/head_watch.py",
        "a Ray start abandoned half way is not stopped again; whether this driver started its Ray head; a "
        "lost head's raylet and workers killed at once",
        "Ray stops what is left at exit; a Ray is taken for a cluster's (45 s patience); its workers end "
        "by themselves after Ray's 60 s",
    ),
    Reach(
        "ray._private.utils:get_ray_address_file",
        "driver/warm_ray.py",
        "hpsearch down removes the address file ray.init() would find the stopped warm Ray by",
        "the file is left; Ray ignores an address nothing answers at",
    ),
    Reach(
        "ray._private.authentication.authentication_token_setup:maybe_enable_token_auth_if_token_available",
        "driver/warm_ray.py",
        "a driver joining the warm Ray sends the user's token",
        "it joins without one (set RAY_AUTH_MODE)",
    ),
    # -- Optuna ------------------------------------------------------------------------------------------
    Reach(
        f"{_RDB}.models:TrialModel.find_or_raise_by_id",
        "stores/write_behind.py",
        "a running trial's steps and attributes written in one transaction a second",
        "each written at once through Trial.report and Trial.set_user_attr",
    ),
    Reach(
        f"{_RDB}.models:TrialIntermediateValueModel.intermediate_value_to_stored_repr",
        "stores/write_behind.py",
        "the same",
        "the same",
    ),
    Reach(f"{_RDB}.models:TrialUserAttributeModel", "stores/write_behind.py", "the same", "the same"),
    Reach(f"{_RDB}.storage:_create_scoped_session", "stores/write_behind.py", "the same", "the same"),
    Reach(
        "optuna.storages:RDBStorage._set_trial_attr_without_commit", "stores/write_behind.py", "the same", "the same"
    ),
    Reach(
        "optuna.storages._cached_storage:_CachedStorage#_backend",
        "stores/write_behind.py",
        "the RDB storage under Optuna's cache",
        "the same",
    ),
    Reach(
        "optuna.trial:Trial#_trial_id",
        "stores/write_behind.py",
        "the same; a pruned trial told its value",
        "the same; a pruned trial's value is its last step's, as Optuna's own tell gives it",
    ),
    Reach(
        "optuna.trial:Trial#_cached_frozen_trial",
        "stores/write_behind.py",
        "the pruner judges the steps not yet written",
        "each step written at once",
    ),
    Reach(
        "optuna.study._tell:_tell_with_warning",
        "stores/write_behind.py",
        "the study told without reading the finished trial back (3 ms a trial)",
        "Study.tell",
    ),
    Reach(
        "optuna.pruners:_filter_study",
        "stores/write_behind.py",
        "a pruned trial told its value: the sampler sees the study as Optuna's own tell shows it",
        "the whole study",
    ),
    Reach(
        "optuna.study:Study#_thread_local",
        "stores/write_behind.py",
        "a pruned trial told its value: the study's cached trials dropped, as Optuna's tell does",
        "nothing to drop",
    ),
    Reach(
        "optuna.study._frozen:FrozenStudy",
        "stores/study_tables.py",
        "the read-only commands list studies from a SQLite file without Optuna's RDBStorage (0.7 s)",
        "Optuna's RDBStorage",
    ),
    # -- MLflow ------------------------------------------------------------------------------------------
    Reach(
        "mlflow.tracking:MlflowClient#_tracking_client",
        "stores/metric_rows.py",
        "a trial's steps written to MLflow's SQL tables in bulk",
        "MlflowClient.log_batch, 1000 at a time",
    ),
    Reach(f"{_SQL_STORE}._check_run_is_active", "stores/metric_rows.py", "the same", "the same"),
    Reach(f"{_SQL_STORE}._get_run", "stores/metric_rows.py", "the same", "the same"),
    Reach("mlflow.utils.validation:_validate_metric", "stores/metric_rows.py", "the same", "the same"),
    Reach(
        "mlflow.store.tracking.dbmodels.models:SqlExperiment.artifact_location",
        "stores/empty_databases.py",
        "an empty MLflow database copied from the cache points its Default experiment into the store",
        "the Default experiment keeps the artifact location it was made with (one warning)",
    ),
)


def missing() -> list[Reach]:
    """The private parts this installation does not have where hpsearch reaches for them."""
    return [r for r in REACHES if not r.present()]

"""MLflow: one experiment per sweep name, one parent run per ``hpsearch run``, one child run per trial.

The driver decides every write (a Ray Tune callback on results); the MLflow writer process
(mlflow_writer.py) makes them, in the order the driver sends them, so the driver never imports MLflow.
Each child run carries the Optuna trial number and the Ray trial id as tags, and the Optuna trial gets the
run id as a user attribute: a user can go from a dashboard trial to its MLflow run and back.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from optuna.trial import TrialState
from ray.tune import Callback
from ray.tune.experiment import Trial

from search.driver.optuna_bridge import OptunaBridge
from search.driver.trial_records import NOT_METRICS, TrialView, is_number
from search.names import (
    CHECKPOINT_DIR,
    CHECKPOINT_FILE,
    CHECKPOINT_STEP_TAG,
    ELAPSED_KEY,
    ERROR_TAG,
    FEASIBLE_TAG,
    MEMBERS_KEY,
    NODE_KEY,
    PARENT_TAG,
    PRUNED_AT_TAG,
    PRUNED_TAG,
    RAY_TRIAL_TAG,
    RENAMED_TAG,
    REPEAT_TAG,
    ROLE_TAG,
    STATE_TAG,
    STEP_KEY,
    STOPPED_TAG,
    TRIAL_NUMBER_TAG,
    VALUE_STEP_TAG,
    VALUE_TAG,
    flatten,
    member_checkpoint_file,
    member_results,
    mlflow_name,
    ray_trial_of,
    run_id_attr,
)
from search.readback.sweeps import SPACE_ARTIFACT
from search.stores import trial_logs
from search.stores.mlflow_writer import InlineWriter, MlflowWriter, WriterError
from search.stores.trial_logs import error_line
from search.stores.write_behind import Metric, Param, RunTag, RunWrites

# MLflow 3's UI opens an experiment on its GenAI overview unless told it holds training runs.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
PARENT = "hpsearch.parent"  # the parent run's key with the writer (a trial's key is its Ray trial id)
# What a step logs to MLflow: every number the trainable reported, and the trial's clock (each step's time).
_NOT_LOGGED = NOT_METRICS - {ELAPSED_KEY}


def params(config: dict[str, Any]) -> list[Param]:
    """A run's parameters: the config flattened to dotted keys, each value within MLflow's limit on a
    parameter's length (6000 characters)."""
    return [Param(k, str(v)[:6000]) for k, v in flatten(config).items()]


MAX_SPACE_PARAMS = 300  # a parent run's parameters for its space, at most; the whole space is its space.yaml


def parent_params(spec: dict[str, Any]) -> list[Param]:
    """The parent run's parameters: the space file flattened, as ``params``; a space that would make more than
    MAX_SPACE_PARAMS of them (10,000 branch choices) is one parameter naming its hyperparameters, since MLflow
    writes a run's parameters ever slower as they grow (minutes for 10,000) and space.yaml holds it whole."""
    space = flatten({"space": spec.get("space") or {}})
    rest = params({k: v for k, v in spec.items() if k != "space"})
    if len(space) <= MAX_SPACE_PARAMS:
        return rest + [Param(k, str(v)[:6000]) for k, v in space.items()]
    names = list(spec.get("space") or {})
    shown = f"{len(names)} hyperparameters ({len(space)} settings; all in space.yaml): " + ", ".join(names)
    return rest + [Param("space", shown[:6000])]


def drop_ray_copy(checkpoint: Any) -> None:
    """A finished trial's checkpoint, once in its MLflow run (``checkpoint/``, which ``best``, ``export`` and
    ``train --from`` read), leaves Ray's trial folder on a local disk: each kept checkpoint is stored once,
    not twice (two trials of 500 MB used 2 GB). hpsearch resumes from its stores, never from Ray's."""
    filesystem = getattr(checkpoint, "filesystem", None)
    if type(filesystem).__name__ == "LocalFileSystem" and Path(checkpoint.path).is_dir():
        shutil.rmtree(checkpoint.path, ignore_errors=True)


class Tracking:
    """The sweep's MLflow handle: its experiment and its parent run, written by the sweep's MLflow writer
    (mlflow_writer.py), which makes every MLflow call of the sweep: the driver imports no MLflow."""

    def __init__(self, writer: MlflowWriter | InlineWriter, artifact_root: Path | None) -> None:
        self.writer = writer
        self.artifact_root = artifact_root

    def experiment_id(self, name: str) -> str:
        # A tracking server chooses (or proxies) the artifact location itself.
        location = None if self.artifact_root is None else (self.artifact_root / name).as_uri()
        return self.writer.experiment(name, location, EXPERIMENT_KIND)

    def start_parent(self, experiment_id: str, spec: dict[str, Any], study_name: str, run_name: str) -> str:
        tags = {ROLE_TAG: "sweep", "optuna.study": study_name, "hpsearch.trainable": spec["trainable"]}
        self.writer.create_run(PARENT, experiment_id, run_name, tags)
        self.writer.log_batch(PARENT, [], parent_params(spec), [])
        self.writer.sync()  # made, with its parameters (or what failed, raised)
        self.writer.log_text(PARENT, yaml.safe_dump(spec, sort_keys=False), SPACE_ARTIFACT)
        return self.writer.run_id(PARENT)

    def reopen_parent(self, run_id: str) -> None:
        """A resumed sweep's parent run, RUNNING again and this sweep's."""
        self.writer.reopen(PARENT, run_id)

    def end_parent(self, status: str, summary: dict[str, float], tags: dict[str, str]) -> None:
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, 0) for k, v in summary.items()]
        self.writer.log_batch(PARENT, metrics, [], [RunTag(k, v) for k, v in tags.items()])
        self.writer.set_terminated(PARENT, status)
        self.writer.sync()


class MlflowTrialCallback(Callback):
    """Creates a child run when a trial starts, logs every reported step, and ends it the way the study did.

    A fused group (one Ray trial, several Optuna trials) has a run per member, tagged with its group: each
    gets its own metrics, ends when its member does (pruned or finished while the others go on), and
    its checkpoint is the member's own file in the group's Ray checkpoint."""

    def __init__(self, tracking: Tracking, experiment_id: str, parent_run_id: str, bridge: OptunaBridge) -> None:
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.bridge = bridge
        # Run writes go to the writer (mlflow_writer.py: a process of its own, or these calls inline), a run
        # named by its key (the Ray trial id, or a fused member's): its parameters as it is made, its metrics and
        # tags in one log_batch a second (write_behind.py), all written before the study is told how it ended.
        self.writer = tracking.writer
        self.writes = RunWrites(self.writer.log_batch, self.writer.flush_s)
        self.runs: set[str] = set()  # the keys that have a run
        self._id_attr: dict[str, str] = {}  # key -> the study's user attribute for its run id, until set
        self.open: set[str] = set()
        self.placed: set[str] = set()
        # A metric a trainable reports under a name MLflow refuses (``acc(%)``) is logged under a name it takes
        # (``acc___``): MLflow refuses a whole batch for one bad key, and the trial's every step with it.
        self.renamed: dict[str, str] = {}  # reported name -> the name its run logs it under
        self._renamed_in: dict[str, set[str]] = {}  # run key -> the reported names its run logs renamed
        self.lost: list[str] = []  # writes MLflow refused (one line each): the sweep then does not end well
        bridge.tell_hooks.append(self)

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles callbacks with the experiment; the writer stays in the driver.
        return {k: v for k, v in self.__dict__.items() if k not in ("writes", "writer")}

    def run_id(self, key: str) -> str:
        return self.writer.run_id(key)

    def before_tell(self, key: str) -> dict[str, str]:
        """The study is about to be told how the trial ended: its run's last steps go to the writer now
        (``written`` waits for them); its run id goes to the study's trial with it."""
        if key not in self.runs:
            return {}
        try:
            self.writes.flush(key)
        except Exception as e:  # noqa: BLE001 - an inline writer's refusal comes here
            self._keep_refused(e)
        attr = self._id_attr.pop(key, None)
        return {attr: self.writer.run_id(key)} if attr else {}

    def written(self) -> None:
        """The trial's run is written. A write MLflow refused is kept in ``lost`` (the sweep ends with it,
        exit 1), not raised: the study is told how the trial ended all the same, never left RUNNING."""
        try:
            self.writer.sync()
        except WriterError as e:
            self._keep_refused(e)

    def _keep_refused(self, error: Exception) -> None:
        """A write MLflow refused, kept in ``lost`` as one line; raised again where the writer died (the runner
        then stops the sweep)."""
        if getattr(self.writer, "dead", None) is not None:
            raise error
        self.lost.append(str(error).splitlines()[0] if str(error) else type(error).__name__)

    def on_step_end(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        self.writes.flush_due()
        for key in list(self._id_attr):  # a running trial's run id, once the writer has sent it
            if (run_id := self.writer.peek(key)) is not None:
                self.bridge.set_attr(key, self._id_attr.pop(key), run_id)

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        if MEMBERS_KEY in trial.config:
            for key, config in zip(self.bridge.members(trial.trial_id), trial.config[MEMBERS_KEY]):
                if key not in self.runs:
                    self._start(key, self.bridge.view(key), config, trial.trial_id)
            return
        if trial.trial_id in self.runs:
            return
        self._start(trial.trial_id, self.bridge.view(trial.trial_id), trial.config, None)

    def _start(self, key: str, view: TrialView | None, config: dict[str, Any], group: str | None) -> None:
        trial_id = ray_trial_of(key)
        number = view.number if view is not None else None
        repeat = view.repeat if view is not None and self.bridge.repeats > 1 else None
        name = f"trial-{number:04d}" if number is not None else trial_id
        tags = {
            PARENT_TAG: self.parent_run_id,
            "optuna.study": self.bridge.study.study_name,
            TRIAL_NUMBER_TAG: str(number),
            RAY_TRIAL_TAG: trial_id,
        }
        if repeat is not None:
            name, tags[REPEAT_TAG] = f"{name}-seed{repeat}", str(repeat)
        if group is not None:
            tags |= {"hpsearch.fused_group": group, "hpsearch.fused_member": str(view.member if view else "")}
        self.writer.create_run(key, self.experiment_id, name, tags)
        self.open.add(key)
        # The parameters go with the run, not with its first steps: the writer makes them while the trial
        # runs, so what the study's tell waits for at the end is the steps alone (writer.sync).
        self.writer.log_batch(key, [], params(config), [])
        self.runs.add(key)
        if view is not None:
            self._id_attr[key] = run_id_attr(repeat)

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any) -> None:
        if self.bridge.is_fused(trial.trial_id):
            self._group_result(trial, result)
            return
        if trial.trial_id not in self.runs:
            return
        self._log_result(trial.trial_id, result)

    def _group_result(self, trial: Trial, result: dict) -> None:
        """Each member's metrics to its run; a member pruned or failed here ends its run now (one that
        finished ends once its checkpoint is logged, in ``on_checkpoint``)."""
        common, by_member = member_results(result)
        keys = self.bridge.members(trial.trial_id)
        for member, metrics in by_member.items():
            key = keys[member]
            if key in self.open:
                self._log_result(key, {**common, **metrics})
        for key in keys:
            view = self.bridge.view(key)
            if key in self.open and view is not None and view.state in (TrialState.PRUNED, TrialState.FAIL):
                self._close(key, *self._ending(view))

    def on_checkpoint(self, iteration: int, trials: list[Trial], trial: Trial, checkpoint: Any, **info: Any) -> None:
        if not self.bridge.is_fused(trial.trial_id):
            return
        with checkpoint.as_directory() as folder:
            for member, key in enumerate(self.bridge.members(trial.trial_id)):
                path = Path(folder) / member_checkpoint_file(member)
                if key not in self.open or not path.is_file():
                    continue
                with tempfile.TemporaryDirectory() as tmp:  # the member's run holds it as a single model's
                    shutil.copy(path, Path(tmp) / CHECKPOINT_FILE)
                    self.writer.log_artifacts(key, tmp, CHECKPOINT_DIR)
                view = self.bridge.view(key)
                if view is not None and view.state is not None:
                    self._close(key, *self._ending(view))

    def _log_result(self, key: str, result: dict) -> None:
        if key not in self.placed and result.get(NODE_KEY):
            # Where Ray placed the trial: on a cluster, the node (and host) that ran it.
            self.placed.add(key)
            placement = {"ray.node_id": str(result[NODE_KEY]), "ray.hostname": str(result.get("hostname", ""))}
            self.writes.log(key, tags=placement)
            self.bridge.set_attr(key, "ray_node_id", placement["ray.node_id"])
        step = int(result.get(STEP_KEY, result.get("training_iteration", 0)))
        ts = int(result.get("timestamp", time.time()) * 1000)
        logged = {k: float(v) for k, v in result.items() if k not in _NOT_LOGGED and is_number(v)}
        metrics = [Metric(self._name(k), v, ts, step) for k, v in logged.items()]
        if renamed := [k for k in result if k in self.renamed]:
            self._renamed_in.setdefault(key, set()).update(renamed)
        self.writes.log(key, metrics=metrics)

    def _name(self, metric: str) -> str:
        """The name a reported metric is logged under: its own, or one MLflow takes (``self.renamed``)."""
        if (name := self.renamed.get(metric)) is None:
            name = mlflow_name(metric)
            if name != metric:
                self.renamed[metric] = name
        return name

    def _ending(self, view: TrialView | None) -> tuple[str, dict[str, str]]:
        """How a run ends, the way its study trial did: status and tags."""
        tags = {}
        status = "FINISHED"
        if view is not None and view.state == TrialState.PRUNED:
            status = "KILLED"
            tags = {PRUNED_TAG: "true", PRUNED_AT_TAG: str(view.pruned_at)}
        elif view is not None and view.state == TrialState.FAIL:
            status = "FAILED"
            tags = {ERROR_TAG: view.failure or "failed"}
        if view is not None and view.violations is not None:
            # feasible when every constraint holds: each constraint's violation (<= 0 holds) beside it
            tags[FEASIBLE_TAG] = str(view.feasible).lower()
            tags["constraints"] = "; ".join(f"{k}: {v:.6g}" for k, v in view.violations.items())
        return status, tags

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        if self.bridge.is_fused(trial.trial_id):
            self._end_group(trial, None)
            return
        self._end(trial, *self._ending(self.bridge.view(trial.trial_id)))

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        if self.bridge.is_fused(trial.trial_id):
            self._end_group(trial, error_line(trial))
            return
        view = self.bridge.view(trial.trial_id)
        self._end(trial, "FAILED", {ERROR_TAG: view.failure if view and view.failure else error_line(trial)})

    def _end_group(self, trial: Trial, error: str | None) -> None:
        """The group's Ray trial ended: its logs go to every member's run, and the runs still open end."""
        files = trial_logs.collect(trial)
        if files:
            self.bridge.set_log_dir(trial.trial_id, str(files[0].parent))
        with trial_logs.for_artifacts(files) as logged:
            for key in self.bridge.members(trial.trial_id):
                if key not in self.open:
                    continue
                for path in logged:
                    self.writer.log_artifacts(key, path, "logs")
                status, tags = self._ending(self.bridge.view(key))
                if error is not None and status == "FINISHED":
                    status, tags = "FAILED", {ERROR_TAG: error}
                self._close(key, status, tags)
        if trial.checkpoint is not None and error is None:  # each finished member's file is in its run
            drop_ray_copy(trial.checkpoint)

    def finish_open(self, reason: str) -> None:
        """Runs Ray stopped without a callback (sweep budget, Ctrl-C) end KILLED with the reason."""
        for trial_id in list(self.open):
            self._close(trial_id, "KILLED", {STOPPED_TAG: reason})

    def _end(self, trial: Trial, status: str, tags: dict[str, str]) -> None:
        if trial.trial_id not in self.runs or trial.trial_id not in self.open:
            return
        self._log_output(trial)
        if trial.checkpoint is not None and status == "FINISHED":
            # A local directory as it is; on an object store (--storage-path s3://...) a downloaded copy.
            with trial.checkpoint.as_directory() as path:
                self.writer.log_artifacts(trial.trial_id, path, CHECKPOINT_DIR)
            drop_ray_copy(trial.checkpoint)
        self._close(trial.trial_id, status, tags)

    def _log_output(self, trial: Trial) -> None:
        """The trial's stdout, stderr and traceback: beside its Ray directory and in its run's logs/ (cut to
        trial_logs.ARTIFACT_CAP there)."""
        files = trial_logs.collect(trial)
        if files:
            self.bridge.set_log_dir(trial.trial_id, str(files[0].parent))
        if trial.trial_id not in self.runs:
            return
        with trial_logs.for_artifacts(files) as logged:
            for path in logged:
                self.writer.log_artifacts(trial.trial_id, path, "logs")

    def _close(self, key: str, status: str, tags: dict[str, str]) -> None:
        view = self.bridge.view(key)
        if view is not None and view.state is not None:
            tags = {**tags, STATE_TAG: view.state.name}
        if view is not None and view.state in (TrialState.COMPLETE, TrialState.PRUNED) and view.values is not None:
            # the value the study holds (of this seed), so the run says what the live line and the table say
            value = view.best if not self.bridge.multi else json.dumps(list(view.values))
            tags = {**tags, VALUE_TAG: repr(value) if isinstance(value, float) else value}
            if view.value_step is not None:
                tags[VALUE_STEP_TAG] = str(view.value_step)
        if renamed := self._renamed_in.pop(key, None):
            tags = {**tags, RENAMED_TAG: json.dumps({k: self.renamed[k] for k in sorted(renamed)})}
        if view is not None and view.checkpoint_step is not None:  # the step whose weights checkpoint/ holds
            tags = {**tags, CHECKPOINT_STEP_TAG: str(view.checkpoint_step)}
        self.writes.log(key, tags={k: v[:5000] for k, v in tags.items()})
        self.writes.flush(key)
        self.writer.set_terminated(key, status)
        self.open.discard(key)

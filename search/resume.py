"""``hpsearch resume``: finish a sweep whose driver died (killed, machine rebooted).

Ray Tune's own ``Tuner.restore`` is not used: after a kill it leaves an Optuna trial RUNNING for ever,
re-suggests its parameters, and Ray's MLflow callback leaves runs RUNNING and logs duplicates. The state
that matters lives in the study and in MLflow, so resume reconciles those two first and then runs the
rest of the sweep under the same parent run:

1. the space as it ran is read back from the parent run's ``space.yaml`` artifact;
2. Optuna trials still RUNNING are marked FAIL (``stopped: driver lost``), MLflow runs still RUNNING
   FAILED with the same tag; nothing that finished is touched or run again;
3. the lost trials' parameters are enqueued, so they run again first, each as a new trial with its own
   MLflow run; then the sweep goes on until its trial count is reached.
"""

from __future__ import annotations

import optuna
import yaml
from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from rich.console import Console

from search import runner
from search.errors import SpecError
from search.spec import validate
from search.store import Store
from search.sweeps import require_sweeps
from search.tracking import latest_parent_run

LOST = "driver lost"


def resume(
    store: Store, name: str, console: Console | None = None, address: str | None = None
) -> runner.SweepOutcome | None:
    require_sweeps(store, [name])
    client = MlflowClient(store.mlflow_url)
    parent = latest_parent_run(client, name)
    if parent is None:
        raise SpecError(f"sweep {name!r} has no parent run in MLflow to resume", name)
    exp_id = parent.info.experiment_id
    if parent.info.status == "FINISHED":
        raise SpecError(f"sweep {name!r} finished; `hpsearch run` it again to add trials", name)
    source = f"{name} (MLflow run {parent.info.run_id})"
    with open(client.download_artifacts(parent.info.run_id, "space.yaml")) as f:
        raw = yaml.safe_load(f)
    sweep = runner.prepare_spec(validate(raw, source), source)

    # 1. the study: trials left RUNNING by the dead driver end FAIL; their parameters run again.
    study = optuna.load_study(study_name=name, storage=store.optuna_url)
    lost = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
    for t in lost:
        study._storage.set_trial_user_attr(t._trial_id, "stopped", LOST)
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
    # 2. MLflow: the parent's children left RUNNING end FAILED.
    children = client.search_runs([exp_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    for run in children:
        if run.info.status == "RUNNING":
            client.set_tag(run.info.run_id, "stopped", LOST)
            client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.FAILED))
    # A configuration finished when the study was told so: with repeats, one seed's FINISHED run is not
    # enough (the configuration is told once all its seeds have ended). The trials of this run are the
    # ones its parent's child runs name.
    numbers = [r.data.tags.get("optuna.trial_number", "") for r in children]
    of_this_run = {int(n) for n in numbers if n.isdigit()}
    finished = {
        t.number
        for t in study.get_trials(deepcopy=False)
        if t.number in of_this_run and t.state in (TrialState.COMPLETE, TrialState.PRUNED)
    }
    remaining = sweep.n_trials - len(finished)
    console = console or Console(stderr=True)
    console.print(
        f"resuming {name}: {len(finished)} of {sweep.n_trials} trials finished before the driver was lost, "
        f"{len(lost)} were running (marked FAIL, run again), {max(remaining, 0)} to go",
        highlight=False,
    )
    if remaining <= 0:
        client.set_terminated(parent.info.run_id, "FINISHED")
        return None
    sweep.n_trials = remaining
    sweep.enqueued = [dict(t.params) for t in lost][:remaining] + sweep.enqueued
    return runner.run(sweep, store, address=address, console=console, parent_run_id=parent.info.run_id)

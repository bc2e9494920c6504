"""Closing what a dead driver left open, so the study and MLflow agree again.

A driver killed mid-sweep leaves Optuna trials RUNNING and MLflow runs RUNNING. Both ``hpsearch resume``
and a later ``hpsearch run`` of the same sweep (the caller holds the sweep's driver lock, so the driver
that left them is dead) close them the same way:

* a study trial still RUNNING ends FAIL with ``stopped: driver lost`` (its parameters may run again);
* each MLflow run still RUNNING ends the way its study trial ended: FINISHED if the study has it
  COMPLETE (the kill came between the two writes), KILLED if PRUNED, else FAILED with the same tag;
  a seed's run that FINISHED while its configuration was lost ends FAILED too (its value counts nowhere);
* the parent run, if it is the caller's to close, ends FAILED with ``stopped: driver lost``.
"""

from __future__ import annotations

import optuna
from mlflow.entities import Run, RunStatus
from mlflow.tracking import MlflowClient
from optuna.trial import FrozenTrial, TrialState

from search.names import STATE_TAG, STOPPED_ATTR, STOPPED_TAG, TRIAL_NUMBER_TAG
from search.stores.infra import rdb_storage
from search.stores.store import Store

LOST = "driver lost"
_RUN_STATUS = {TrialState.COMPLETE: RunStatus.FINISHED, TrialState.PRUNED: RunStatus.KILLED}


def children_of(client: MlflowClient, parent: Run) -> list[Run]:
    return client.search_runs(
        [parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'", max_results=50_000
    )


def close_lost(
    store: Store, study: optuna.Study, client: MlflowClient, parent: Run
) -> tuple[list[FrozenTrial], list[Run]]:
    """End what the dead driver left RUNNING; return the lost study trials and the parent's child runs."""
    lost = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
    # A trial another process asked has no Trial object here: its attribute goes through the storage's
    # public API (study id, then trial id by number).
    storage = rdb_storage(store.optuna_url)
    try:
        study_id = storage.get_study_id_from_name(study.study_name)
        for t in lost:
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
            storage.set_trial_user_attr(trial_id, STOPPED_ATTR, LOST)
            study.tell(t.number, state=TrialState.FAIL)
    finally:
        storage.engine.dispose()  # a storage of its own, for these writes only
    states = {str(t.number): t.state for t in study.get_trials(deepcopy=False)}
    lost_numbers = {str(t.number) for t in lost}
    children = children_of(client, parent)
    for run in children:
        number = run.data.tags.get(TRIAL_NUMBER_TAG, "")
        if run.info.status == "FINISHED" and number in lost_numbers:
            # With repeats: this seed finished, but its configuration was lost and runs again as a new trial;
            # its value counts nowhere, so the run must not read FINISHED beside a FAIL trial.
            client.set_tag(run.info.run_id, STOPPED_TAG, f"{LOST} (this seed finished; its configuration did not)")
            client.set_tag(run.info.run_id, STATE_TAG, TrialState.FAIL.name)
            client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.FAILED))
            continue
        if run.info.status != "RUNNING":
            continue
        state = states.get(number)
        status = _RUN_STATUS.get(state, RunStatus.FAILED)
        if status == RunStatus.FAILED:
            client.set_tag(run.info.run_id, STOPPED_TAG, LOST)
        if state is not None:
            client.set_tag(run.info.run_id, STATE_TAG, state.name)
        client.set_terminated(run.info.run_id, RunStatus.to_string(status))
    return lost, children


def close_parent(client: MlflowClient, parent: Run) -> None:
    client.set_tag(parent.info.run_id, STOPPED_TAG, LOST)
    client.set_terminated(parent.info.run_id, RunStatus.to_string(RunStatus.FAILED))

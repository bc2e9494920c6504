"""``hpsearch resume``: finish a sweep whose driver died (killed, machine rebooted) or was interrupted.

Ray Tune's own ``Tuner.restore`` is not used: after a kill it leaves an Optuna trial RUNNING for ever,
re-suggests its parameters, and Ray's MLflow callback leaves runs RUNNING and logs duplicates. The state
that matters lives in the study and in MLflow, so resume reconciles those two first and then runs the
rest of the sweep under the same parent run:

0. no other driver holds the sweep (``driver_lock``): a live driver's trials are not lost;
1. the space as it ran is read back from the parent run's ``space.yaml`` artifact (or the study's copy);
2. what the dead driver left RUNNING is closed (``reconcile``): study trials FAIL, each MLflow run the
   way its study trial ended; nothing that finished is touched or run again;
3. the parameters of the trials it did not finish, lost with the driver or stopped by Ctrl-C / SIGTERM
   (FAIL, ``stopped: driver lost | interrupted | Ray's head lost``), are enqueued, so they run again first,
   each as a new trial with its own MLflow run and user attribute ``rerun_of`` (a trial already run again is not run a
   third time); a trial the driver lost while its parameters were being sampled never ran, and is only
   closed; then the sweep goes on until its trial count is reached.
"""

from __future__ import annotations

from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from rich.console import Console

from search.driver import plan, runner
from search.driver.summary import SweepOutcome
from search.errors import SweepError
from search.names import HEAD_LOST, PARENT_ATTR, RERUN_OF_ATTR, STOPPED_ATTR, TRIAL_NUMBER_TAG
from search.readback.sweeps import latest_parent_run, load_study, recorded_space, require_sweeps
from search.space import conditions
from search.space.loading import validate
from search.space.params import Param
from search.stores.driver_lock import sole_driver
from search.stores.reconcile import LOST, close_lost
from search.stores.store import Store
from search.stores.study_tables import close


def resume(store: Store, name: str, console: Console | None = None, address: str | None = None) -> SweepOutcome | None:
    close(require_sweeps(store, [name]))
    with sole_driver(store, name):  # a live driver's trials are not lost: refuse while one holds the sweep
        return _resume(store, name, console, address)


def _resume(store: Store, name: str, console: Console | None, address: str | None) -> SweepOutcome | None:
    client = MlflowClient(store.mlflow_url)
    parent = latest_parent_run(client, name)
    if parent is None:
        raise SweepError(f"sweep {name!r} has no parent run in MLflow to resume", name)
    if parent.info.status == "FINISHED":
        raise SweepError(f"sweep {name!r} finished; `hpsearch run` it again to add trials", name)
    source = f"{name} (MLflow run {parent.info.run_id})"
    study = load_study(store, name)
    raw = recorded_space(store, parent.info.run_id, study.user_attrs)
    if raw is None:
        raise SweepError("the space it ran is recorded neither in MLflow nor in the study", source)
    sweep = plan.prepare_spec(validate(raw, source), source)

    # 1-2. the study's RUNNING trials end FAIL, their MLflow runs the way the study ended them
    lost, children = close_lost(store, study, client, parent)
    # A configuration finished when the study was told so: with repeats, one seed's FINISHED run is not
    # enough (the configuration is told once all its seeds have ended). The trials of this run are the
    # ones its parent's child runs name.
    numbers = [r.data.tags.get(TRIAL_NUMBER_TAG, "") for r in children]
    of_this_run = {int(n) for n in numbers if n.isdigit()}
    # and those it asked that never got an MLflow run (interrupted as they started)
    of_this_run |= {
        t.number for t in study.get_trials(deepcopy=False) if t.user_attrs.get(PARENT_ATTR) == parent.info.run_id
    }
    finished = finished_of(study, of_this_run)
    remaining = sweep.n_trials - len(finished)
    # a lost trial may have had no MLflow run yet (killed as it started): it is this run's all the same
    redo = unfinished(study, of_this_run | {t.number for t in lost}, sweep.spec.space)
    console = console or Console(stderr=True)
    console.print(
        f"resuming {name}: {len(finished)} of {sweep.n_trials} trials finished, {len(lost)} were running when "
        f"its driver was lost, {len(redo)} to run again ({', '.join(f'trial {t.number}' for t in redo) or 'none'}), "
        f"{max(remaining, 0)} to go",
        highlight=False,
        soft_wrap=True,
    )
    if remaining <= 0:
        client.set_terminated(parent.info.run_id, "FINISHED")
        return None
    sweep.n_trials = remaining
    sweep.reruns = [(dict(t.params), t.number) for t in redo][:remaining]
    return runner.run(sweep, store, address=address, console=console, parent_run_id=parent.info.run_id)


RERUN = (LOST, "interrupted", HEAD_LOST)  # why a trial did not finish, when it is to run again


def finished_of(study, of_this_run: set[int]) -> set[int]:
    """The trials of this run that count toward its trial count: complete or pruned (a pruned trial ran as
    far as the pruner let it; it is done, not to run again)."""
    return {
        t.number
        for t in study.get_trials(deepcopy=False)
        if t.number in of_this_run and t.state in (TrialState.COMPLETE, TrialState.PRUNED)
    }


def unfinished(study, of_this_run: set[int], space: dict[str, Param]) -> list:
    """The trials of this run that the driver's loss or an interrupt stopped (FAIL, ``stopped``), and that
    no later trial has run again (``rerun_of``), in order. One killed while the sampler chose its parameters
    (it lacks some that its own values make active in ``space``) never ran: it is closed, not run again
    with half of them."""
    trials = study.get_trials(deepcopy=False)
    rerun = {t.user_attrs.get(RERUN_OF_ATTR) for t in trials}
    return [
        t
        for t in trials
        if t.number in of_this_run
        and t.state == TrialState.FAIL
        and t.user_attrs.get(STOPPED_ATTR) in RERUN
        and t.number not in rerun
        and set(conditions.active(space, t.params)) <= set(t.params)
    ]

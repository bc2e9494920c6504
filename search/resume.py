"""``hpsearch resume``: finish a sweep whose driver died (killed, machine rebooted).

Ray Tune's own ``Tuner.restore`` is not used: after a kill it leaves an Optuna trial RUNNING for ever,
re-suggests its parameters, and Ray's MLflow callback leaves runs RUNNING and logs duplicates. The state
that matters lives in the study and in MLflow, so resume reconciles those two first and then runs the
rest of the sweep under the same parent run:

0. no other driver holds the sweep (``driver_lock``): a live driver's trials are not lost;
1. the space as it ran is read back from the parent run's ``space.yaml`` artifact (or the study's copy);
2. what the dead driver left RUNNING is closed (``reconcile``): study trials FAIL, each MLflow run the
   way its study trial ended; nothing that finished is touched or run again;
3. the lost trials' parameters are enqueued, so they run again first, each as a new trial with its own
   MLflow run; then the sweep goes on until its trial count is reached.
"""

from __future__ import annotations

from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from rich.console import Console

from search import runner
from search.driver_lock import sole_driver
from search.errors import SweepError
from search.reconcile import close_lost
from search.spec import validate
from search.store import Store
from search.sweeps import load_study, recorded_space, require_sweeps
from search.tracking import latest_parent_run


def resume(
    store: Store, name: str, console: Console | None = None, address: str | None = None
) -> runner.SweepOutcome | None:
    require_sweeps(store, [name])
    with sole_driver(store, name):  # a live driver's trials are not lost: refuse while one holds the sweep
        return _resume(store, name, console, address)


def _resume(store: Store, name: str, console: Console | None, address: str | None) -> runner.SweepOutcome | None:
    client = MlflowClient(store.mlflow_url)
    parent = latest_parent_run(client, name)
    if parent is None:
        raise SweepError(f"sweep {name!r} has no parent run in MLflow to resume", name)
    if parent.info.status == "FINISHED":
        raise SweepError(f"sweep {name!r} finished; `hpsearch run` it again to add trials", name)
    source = f"{name} (MLflow run {parent.info.run_id})"
    study = load_study(store, name)
    raw = recorded_space(client, parent.info.run_id, study.user_attrs)
    if raw is None:
        raise SweepError("the space it ran is recorded neither in MLflow nor in the study", source)
    sweep = runner.prepare_spec(validate(raw, source), source)

    # 1-2. the study's RUNNING trials end FAIL, their MLflow runs the way the study ended them
    lost, children = close_lost(store, study, client, parent)
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

"""One sweep, start to end: validate, open the stores, run Ray Tune with the Optuna bridge, reconcile.

``prepare`` does every check and touches no store, so a bad input leaves nothing behind. ``run`` creates
the store, the study and the parent run, drives ``ray.tune.Tuner``, and afterwards ends anything Ray
stopped without telling its callbacks (Ctrl-C, SIGTERM), so no trial is left RUNNING in either store.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from contextlib import closing, contextmanager
from datetime import datetime
from typing import Any, Callable, Iterator, Sequence

import optuna
import ray
from ray import tune
from rich.console import Console

from search.driver import interrupts, ray_patches
from search.driver.bridge_settings import BridgeSettings
from search.driver.head_watch import HeadWatch
from search.driver.optuna_bridge import OptunaBridge
from search.driver.plan import Sweep
from search.driver.progress import BacklogLine, ProgressCallback
from search.driver.ray_session import StopBoard, trial_function
from search.driver.ray_start import ensure_ray
from search.driver.study_setup import (
    check_store,
    close_orphans,
    definition_version,
    existing_study,
    init_store,
    open_study,
)
from search.driver.summary import SweepOutcome, opening_line, parent_metrics, parent_tags, print_summary, summarize
from search.driver.tracking import MlflowTrialCallback, Tracking
from search.driver.trial_budget import TrialBudgetStopper
from search.driver.tune_glue import OptunaSearcher
from search.errors import (
    SpecError,
    StoreFullError,
    TrackingRefusedError,
    UserError,
    WriterLostError,
)
from search.names import PARENT_ATTR, STOPPED_TAG
from search.readback.sweeps import latest_parent_run
from search.space import samplers
from search.space.definition import (
    VERSION_ATTR,
)
from search.space.spec import SweepSpec
from search.stores.driver_lock import sole_driver
from search.stores.infra import check_reachable
from search.stores.mlflow_writer import MlflowWriter, WriterError
from search.stores.store import Store, out_of_space
from trainables.registry import TrainableSpec

log = logging.getLogger(__name__)
FAILED_FAST = "the sweep stopped: its first trials all failed alike"


class FailFastStopper(tune.Stopper):
    """Ends the sweep once its first trials all failed alike (``OptunaBridge.failing_fast``), as Ray's
    ``FailureConfig(fail_fast=True)`` does on the first failure: a broken set-up stops in seconds, not after
    every trial has failed the same way."""

    def __init__(self, bridge: OptunaBridge) -> None:
        self.bridge = bridge

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.bridge.failing_fast is not None


def check_resources(spec: SweepSpec, source: str, console: Console, cluster: bool) -> None:
    """A trial's resources must fit on one node; locally that is an error, on a cluster a warning
    (an autoscaler may still add such a node)."""
    want = {k.upper() if k in ("cpu", "gpu") else k: v for k, v in spec.resources.ray().items() if v}
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    if any(all(node.get(k, 0) >= v for k, v in want.items()) for node in nodes):
        return
    asked = ", ".join(f"{k} {v:g}" for k, v in want.items())
    largest = ", ".join(f"{k} {max((n.get(k, 0) for n in nodes), default=0):g}" for k in want)
    message = f"a trial asks for {asked}, but no Ray node has that much (largest: {largest})"
    if not cluster:
        raise SpecError(message, source, "resources")
    console.print(f"warning: {message}; trials wait until the cluster has such a node", highlight=False)


@contextmanager
def sigterm_stops_tune(seen: list[int]) -> Iterator[None]:
    """Ray Tune stops gracefully on SIGINT/SIGUSR1; make SIGTERM do the same while the sweep runs (and list
    it in ``seen``, for the exit code)."""
    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum: int, frame: Any) -> None:
        seen.append(signum)
        # Tune's loop listens for SIGUSR1 once it is set up; before that, SIGUSR1 would kill the process, and
        # the listed signal alone keeps the searcher from asking any trial (OptunaSearcher.signals)
        if signal.getsignal(signal.SIGUSR1) not in (signal.SIG_DFL, signal.SIG_IGN, None):
            os.kill(os.getpid(), signal.SIGUSR1)

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def build_tuner(
    sweep: Sweep,
    store: Store,
    bridge: OptunaBridge,
    run_name: str,
    callbacks: list[tune.Callback],
    signals: Sequence[int] = (),
) -> tune.Tuner:
    """Ray Tune wired to the bridge: Optuna asks, the pruner (or ASHA) stops, budgets bound time; once
    ``signals`` lists one (it came before Tune's own handler was there), no trial is asked."""
    ray_patches.apply()  # a trial killed for the host's memory fails alone, not the sweep
    spec = sweep.spec
    interval = spec.report_interval_s
    budget = spec.budget
    limit = budget.trial + (interval or 0.0) if budget.trial else None  # as TrialBudgetStopper's
    scheduler = sweep.scheduler
    board = StopBoard.remote() if spec.fuse > 1 else None  # pruned members of fused groups, for their workers
    scheduler.attach(bridge, limit, board, budget.startup)
    trainable = trial_function(
        spec.trainable,
        sweep.metric,
        sweep.mode,
        spec.value_rule,
        spec.resources.cpu,
        spec.resources.gpu,
        budget.trial,
        interval,
        board,
    )
    return tune.Tuner(
        tune.with_resources(trainable, spec.resources.ray()),
        tune_config=tune.TuneConfig(
            search_alg=OptunaSearcher(bridge, signals),
            scheduler=scheduler,
            num_samples=sweep.n_trials * spec.repeats,
            max_concurrent_trials=spec.concurrency,
            reuse_actors=True,
            time_budget_s=budget.sweep,
            trial_dirname_creator=lambda t: f"trial-{bridge.number(t.trial_id)}-{t.trial_id}",
        ),
        run_config=tune.RunConfig(
            name=run_name,
            storage_path=store.ray_results,
            verbose=0,
            stop=tune.stopper.CombinedStopper(
                FailFastStopper(bridge), *([TrialBudgetStopper(budget.trial, interval or 0.0)] if budget.trial else [])
            ),
            callbacks=callbacks,
            failure_config=tune.FailureConfig(max_failures=0),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            # A trial's print() and warnings land in its directory (stdout, stderr), then in its MLflow run.
            log_to_file=True,
        ),
    )


def run(
    sweep: Sweep,
    store: Store,
    *,
    new: bool = False,
    address: str | None = None,
    console: Console | None = None,
    callbacks: list[tune.Callback] = (),
    parent_run_id: str | None = None,
    accept_change: bool = False,
    checked: bool = False,
    writer: MlflowWriter | None = None,
) -> SweepOutcome:
    """Run the sweep; with ``parent_run_id`` (hpsearch resume) its trials join that MLflow parent run;
    ``accept_change`` goes on in a study whose definition differs (recording the change); ``checked``: the
    store was checked and created already (``study_setup.create_store``, for a dashboard that came first);
    ``writer``: an MLflow writer started earlier (the CLI starts it as soon as the space file is read)."""
    console = console or Console(stderr=True)
    if not checked:
        store.check()
        check_reachable(store, address)
        check_store(sweep, store, new, accept_change)  # before Ray starts: a refusal costs a second, not ten
    # Trial runs are written by a process of their own (mlflow_writer.py). It starts before Ray does, so
    # MLflow's import there (2 s of CPU) is made while Ray's processes start, not while the first trial does.
    with closing(writer or MlflowWriter()) as writer:
        if warm := ensure_ray(address):
            console.print(f"on the warm Ray at {warm} (hpsearch up; hpsearch down stops it)", highlight=False)
        check_resources(sweep.spec, sweep.source, console, cluster=bool(address))
        return _run_on_ray(sweep, store, new, console, callbacks, parent_run_id, writer)


def _run_on_ray(
    sweep: Sweep,
    store: Store,
    new: bool,
    console: Console,
    callbacks: list[tune.Callback],
    parent_run_id: str | None,
    writer: MlflowWriter,
) -> SweepOutcome:
    try:
        # From here on every write is made whole: an interrupt waits (interrupts.held) until the sweep starts
        # its trials, where Ray Tune stops them gracefully, and again while the sweep is closed.
        with interrupts.held() as held:
            storage = init_store(store, writer)
            with sole_driver(store, sweep.spec.name), closing(writer):  # every run written before the lock goes
                return _drive(sweep, store, storage, new, console, callbacks, parent_run_id, writer, held)
    except Exception as e:
        if isinstance(e, WriterError) and writer.dead is not None:  # died as the sweep was set up (a kill, OOM)
            then = _how_to_go_on(store, sweep.spec.name)
            said = f"{writer.dead} as the sweep was set up, so it stopped before any trial: {then}"
            raise WriterLostError(said) from None
        # A full disk fails every write that follows (closing trials included): stop with one line.
        if isinstance(e, UserError) or not out_of_space(e):
            raise
        then = _how_to_go_on(store, sweep.spec.name)
        raise StoreFullError(
            f"no space left on the disk of the store ({store.describe()}): the sweep stopped, and what "
            f"finished is kept; free some space, then {then}"
        ) from e


def _how_to_go_on(store: Store, name: str) -> str:
    return f"`hpsearch resume {name}` finishes it" if _resumable(store, name) else "run it again"


def _resumable(store: Store, name: str) -> bool:
    from mlflow.tracking import MlflowClient

    try:
        parent = latest_parent_run(MlflowClient(store.mlflow_url), name)
    except Exception:  # noqa: BLE001 - only chooses the advice in an error message
        return False
    return parent is not None and parent.info.status == "RUNNING"


def _drive(
    sweep: Sweep,
    store: Store,
    storage: optuna.storages.RDBStorage,
    new: bool,
    console: Console,
    callbacks: list[tune.Callback],
    parent_run_id: str | None,
    writer: MlflowWriter,
    held: list[int],
) -> SweepOutcome:
    spec = sweep.spec
    tracking = Tracking(writer, store.artifacts)
    study, experiment_id, parent_run_id, run_name = _open(sweep, store, storage, new, console, tracking, parent_run_id)
    bridge = make_bridge(sweep, study, parent_run_id)
    writer.on_wait = BacklogLine(console)
    mlflow_cb = MlflowTrialCallback(tracking, experiment_id, parent_run_id, bridge)
    progress = ProgressCallback(bridge, console)
    # The signals that come while the sweep is set up, and until Ray Tune's loop installs its own handler:
    # then no trial starts
    signals = held
    tuner = build_tuner(sweep, store, bridge, run_name, [mlflow_cb, progress, *callbacks], signals)
    console.print(opening_line(sweep, store), highlight=False)
    status = "FINISHED"
    started = time.monotonic()
    try:
        if not held:
            with sigterm_stops_tune(signals), HeadWatch(spec.name, on_lost=closer(bridge, mlflow_cb, tracking)):
                tuner.fit()
    except KeyboardInterrupt:  # out of Ray Tune's loop (a second Ctrl-C is held, listed): closed below all the same
        status = "KILLED"
    except BaseException:
        status = "FAILED"
        raise
    finally:
        if (board := getattr(sweep.scheduler, "board", None)) is not None:
            ray.kill(board)  # the fused groups' stop board: Tune's registry keeps its handle, and so the actor
        if writer.dead is not None:  # nothing more reaches MLflow: leave both stores as a dead driver would
            raise WriterLostError(
                f"{writer.dead} mid-sweep, so the sweep stopped: what finished is whole in both stores, and "
                f"`hpsearch resume {spec.name}` closes the trials that were running and finishes it"
            ) from None
        wall = time.monotonic() - started
        outcome = _end(
            sweep, store, bridge, mlflow_cb, writer, tracking, parent_run_id, run_name, status, signals, wall
        )
    console.print(progress.status_line(), highlight=False)
    print_summary(sweep, store, outcome, bridge, console)
    if outcome.lost:
        raise TrackingRefusedError(
            f"MLflow refused {len(outcome.lost)} write(s) of this sweep's trial runs (the first: {outcome.lost[0]}): "
            f"the study holds every trial, their MLflow runs lack what was refused"
        )
    return outcome


def close_open(bridge: OptunaBridge, mlflow_cb: MlflowTrialCallback, reason: str, as_pruned: bool) -> list[str]:
    """Every trial Ray stopped without telling us (the budget, a signal, failing fast, its head lost), ended in
    the study and in MLflow with the reason, and every trial run written (what MLflow refused: lost). The Ray
    trial ids it ended."""
    stopped = bridge.finish_open(reason, as_pruned=as_pruned)
    mlflow_cb.finish_open(reason)
    mlflow_cb.writes.flush_all()  # what runs closed earlier still held (nothing, as a rule)
    mlflow_cb.written()
    return stopped


def closer(bridge: OptunaBridge, mlflow_cb: MlflowTrialCallback, tracking: Tracking) -> Callable[[str], None]:
    """What a sweep whose Ray went away holds open, closed as an interrupt closes it (``HeadWatch``'s
    ``on_lost``): its running trials FAIL with the reason (``hpsearch resume`` runs them again), their runs
    and the parent run KILLED. The stores still answer; only Ray does not."""

    def close(reason: str) -> None:
        close_open(bridge, mlflow_cb, reason, as_pruned=False)
        tracking.end_parent("KILLED", {}, {STOPPED_TAG: reason})

    return close


def _end(
    sweep: Sweep,
    store: Store,
    bridge: OptunaBridge,
    mlflow_cb: MlflowTrialCallback,
    writer: MlflowWriter,
    tracking: Tracking,
    parent_run_id: str,
    run_name: str,
    status: str,
    signals: list[int],
    wall: float,
) -> SweepOutcome:
    """Close what Ray stopped without telling us (the budget, a signal, failing fast), write every trial
    run, and end the parent run with the sweep's outcome."""
    spec, budget = sweep.spec, sweep.spec.budget
    # Ray ends trials at the sweep budget (or on a signal) without telling searcher or callbacks.
    by_budget = budget.sweep is not None and wall >= budget.sweep - 1.0
    failing = bridge.failing_fast
    reason = "sweep budget" if by_budget else FAILED_FAST if failing else "interrupted"
    # Every trial run is written before the parent run ends. With the disk full these writes fail too: what
    # stays RUNNING is what `hpsearch resume` closes.
    stopped = close_open(bridge, mlflow_cb, reason, as_pruned=by_budget)
    interrupted = (
        not by_budget and not failing and (bool(stopped) or len(bridge.views()) < sweep.n_trials * spec.repeats)
    )
    if interrupted and status == "FINISHED":
        status = "KILLED"
    if (failing or mlflow_cb.lost) and status == "FINISHED":
        status = "FAILED"
    outcome = summarize(bridge, parent_run_id, interrupted)
    outcome.renamed, outcome.lost = dict(mlflow_cb.renamed), list(mlflow_cb.lost)
    outcome.signal = signals[0] if signals else signal.SIGINT
    outcome.stopped = sorted({v.number for v in bridge.views() if v.ray_trial_id in stopped})
    outcome.failed_fast = f"its first {spec.fail_fast} trials all raised {failing}" if failing else None
    outcome.stopped_by_budget, outcome.wall_s = by_budget, wall
    if "://" not in store.ray_results:
        outcome.ray_dir = f"{store.ray_results}/{run_name}"
    tracking.end_parent(status, parent_metrics(outcome), parent_tags(outcome))
    return outcome


def _open(
    sweep: Sweep,
    store: Store,
    storage: optuna.storages.RDBStorage,
    new: bool,
    console: Console,
    tracking: Tracking,
    parent_run_id: str | None,
) -> tuple[optuna.Study, str, str, str]:
    """The study (what a killed driver left closed first, or archived by --new) and this run's parent run:
    a new one, or with ``parent_run_id`` (resume) that one, RUNNING again."""
    spec = sweep.spec
    if parent_run_id is None and (existing := existing_study(storage, spec.name)) is not None:
        close_orphans(store, existing, console)
    study = open_study(sweep, storage, new, console)
    experiment_id = tracking.experiment_id(spec.name)
    run_name = f"{spec.name}-{datetime.now():%Y%m%d-%H%M%S}"
    if parent_run_id is None:
        # Without cluster: its storage URL may hold a password, and where a sweep ran is not a hyperparameter.
        recorded = spec.model_dump(mode="json", exclude={"cluster"})
        study.set_user_attr("space", recorded)  # for resume, should the driver die before space.yaml is logged
        parent_run_id = tracking.start_parent(experiment_id, recorded, study.study_name, run_name)
    else:
        tracking.reopen_parent(parent_run_id)
    return study, experiment_id, parent_run_id, run_name


def make_bridge(sweep: Sweep, study: optuna.Study, parent_run_id: str) -> OptunaBridge:
    # every trial knows the run that asked it (resume finds it even if its own MLflow run was never made)
    attrs = {PARENT_ATTR: parent_run_id} | ({VERSION_ATTR: version} if (version := definition_version(study)) else {})
    return OptunaBridge(study, bridge_settings(sweep), sweep.front_pruner, attrs)


def bridge_settings(sweep: Sweep) -> BridgeSettings:
    """What the sweep's bridge asks, judges and tells by, read off its plan."""
    spec = sweep.spec
    return BridgeSettings(
        distributions=samplers.distributions(spec),
        metrics=list(sweep.metrics),
        modes=list(sweep.modes),
        n_trials=sweep.n_trials,
        fixed_config=spec.config,
        repeats=spec.repeats,
        constraints=list(spec.constraint_list),
        value_rule=spec.value_rule,
        space=spec.space if spec.conditional else None,
        fail_fast=spec.fail_fast,
        fuse=spec.fuse,
        fuse_key=fuse_key(sweep.trainable) if spec.fuse > 1 else None,
        round_size=sweep.round_size,
        concurrency=spec.concurrency,
    )


def fuse_key(trainable: TrainableSpec) -> Callable[[dict[str, Any]], Any]:
    """What the members of one fused group must share, read off a configuration by its trainable; and, in a
    conditional space, the same set of parameters set (a member never trains with another's branch)."""

    def key(config: dict[str, Any]) -> Any:
        return tuple(sorted(config)), trainable.fuse_key(trainable.params(**config))

    return key

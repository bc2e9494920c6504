"""The stores a sweep writes, made ready before its first trial: the checks that read them (is this study
the same search, the same directions?), their creation, the study opened (or archived by ``--new``) with its
definition recorded, and what a killed driver left RUNNING closed. ``runner.run`` calls these in order;
``hpsearch run --dashboard`` creates the store first, so its dashboard watches from the first trial.
"""

from __future__ import annotations

from datetime import datetime
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import sqlalchemy
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import TrialState
from rich.console import Console

from search.errors import SpecError, StoreError
from search.names import RERUN_OF_ATTR, ROLE_TAG
from search.readback.sweeps import latest_parent_run
from search.space import samplers
from search.space.conditions import same
from search.space.definition import (
    CHANGES_ATTR,
    DEFINITION_ATTR,
    VERSION_ATTR,
    change_record,
    definition,
    differences,
    recorded,
)
from search.space.params import CategoricalParam
from search.stores import empty_databases
from search.stores.driver_lock import setting_up
from search.stores.infra import check_reachable, is_sql, rdb_storage, select
from search.stores.mlflow_writer import InlineWriter, MlflowWriter
from search.stores.store import Store, out_of_space

if TYPE_CHECKING:
    from search.driver.plan import Sweep

ARCHIVING = "archiving"  # true on a study's copy (NAME@time) until --new has copied it whole


def sweep_definition(sweep: Sweep) -> dict[str, Any]:
    """What defines this sweep's search (search/space/definition.py): a study that goes on must share it."""
    return definition(sweep.spec.model_dump(mode="json", exclude={"cluster"}), sweep.metrics, sweep.modes)


def study_definition(study: optuna.Study) -> dict[str, Any] | None:
    """What defined the study's search, as it recorded it (None for a study hpsearch never ran)."""
    modes = ["max" if d == optuna.study.StudyDirection.MAXIMIZE else "min" for d in study.directions]
    return recorded(study.user_attrs, study.metric_names, modes)


def check_store(sweep: Sweep, store: Store, new: bool, accept_change: bool = False) -> None:
    """Refuse to continue a study that was made for another direction, or for another search (its
    definition differs) unless ``accept_change``; reads only."""
    if new or not store.exists():
        return
    storage = rdb_storage(store.optuna_url)
    try:
        study = optuna.load_study(study_name=sweep.spec.name, storage=storage)
    except KeyError:
        return
    finally:
        storage.engine.dispose()
    used = used_distributions(study)
    align_choices(sweep, used)
    old = study_definition(study)
    changed = differences(old, sweep_definition(sweep)) if old is not None else []
    if changed and accept_change:
        refuse_what_optuna_cannot_change(sweep, used)
    if changed and not accept_change and study.directions == sweep.directions:
        raise SpecError(
            f"the study {sweep.spec.name!r} in {store.shown_storage} is another search: {'; '.join(changed)}. "
            "Name this one differently, pass --new to archive that study and start afresh, or --accept-change "
            "to go on in it (the change is recorded on the study and its later trials)",
            sweep.source,
        )
    if study.directions != sweep.directions:

        def said(directions: list[optuna.study.StudyDirection]) -> str:
            return ", ".join(d.name.lower() for d in directions)

        raise SpecError(
            f"the study {sweep.spec.name!r} in {store.shown_storage} was made to {said(study.directions)}; "
            f"this file asks to {said(sweep.directions)} (pass --new to start a fresh study)",
            sweep.source,
            "mode",
        )


def used_distributions(study: optuna.Study) -> dict[str, BaseDistribution]:
    """Each parameter's distribution as the study's trials were sampled from it."""
    used: dict[str, BaseDistribution] = {}
    for trial in study.get_trials(deepcopy=False):
        used.update(trial.distributions)
    return used


def align_choices(sweep: Sweep, used: dict[str, BaseDistribution]) -> None:
    """A categorical whose choices are the study's in another order (a branch mapping's keys reordered) is the
    same search: it keeps the study's order, which Optuna needs (it stores a choice by its place)."""
    for name, param in sweep.spec.space.items():
        old = used.get(name)
        if not isinstance(param, CategoricalParam) or not isinstance(old, CategoricalDistribution):
            continue
        new, before = param.values(), list(old.choices)
        if new != before and _same_set(new, before):
            sweep.spec.space[name] = param.model_copy(update={"choices": before})


def _same_set(a: list[Any], b: list[Any]) -> bool:
    def within(xs: list[Any], ys: list[Any]) -> bool:
        return all(any(same(x, y) for y in ys) for x in xs)

    return len(a) == len(b) and within(a, b) and within(b, a)


def refuse_what_optuna_cannot_change(sweep: Sweep, used: dict[str, BaseDistribution]) -> None:
    """``--accept-change`` goes on in the same study, so each parameter its trials used must keep what Optuna
    holds fixed: a categorical's choices, a range's kind, its log scale and its step. Refused here, before
    anything is written: past this the change was recorded, then the sweep failed at its first sample."""
    for name, dist in samplers.distributions(sweep.spec).items():
        old = used.get(name)
        if old is None:
            continue
        try:
            optuna.distributions.check_distribution_compatibility(old, dist)
        except ValueError:
            if isinstance(old, CategoricalDistribution) and isinstance(dist, CategoricalDistribution):
                what = f"its choices {list(old.choices)} -> {list(dist.choices)}"
            else:
                what = f"{_kind(old)} -> {_kind(dist)}"
            raise SpecError(
                f"--accept-change cannot go on in study {sweep.spec.name!r}: {what}, and Optuna keeps that fixed "
                "within a study (a range's bounds may change, not its kind, log scale or step, nor a categorical's "
                "choices); name this sweep differently, or pass --new to archive the study and start afresh",
                sweep.source,
                f"space.{name}",
            ) from None


def _kind(dist: BaseDistribution) -> str:
    kind = type(dist).__name__.removesuffix("Distribution").lower()
    log = " log" if getattr(dist, "log", False) else ""
    step = f" step {dist.step}" if getattr(dist, "step", None) is not None else ""
    return f"{kind}{log}{step}"


def create_store(
    sweep: Sweep, store: Store, new: bool = False, address: str | None = None, accept_change: bool = False
) -> None:
    """The store's directories and an empty study database, so a dashboard can watch from the start."""
    store.check()
    check_reachable(store, address)
    check_store(sweep, store, new, accept_change)
    init_store(store)


def init_store(store: Store, writer: MlflowWriter | InlineWriter | None = None) -> optuna.storages.RDBStorage:
    """Directories, the Optuna tables and MLflow's schema, created by one process at a time; on a full
    disk, one line and no half-made database left behind. Returns the Optuna storage it opened (and so
    checked), for the sweep's study: opening another costs a fifth of a second. MLflow's side is opened
    (and checked) by ``writer``, the sweep's MLflow writer; without one, here."""
    new_files = [p for p in store.local_databases() if not p.exists()]
    writer = writer or InlineWriter()
    try:
        store.create()
        with setting_up(store):
            for path in new_files:
                if not path.exists():  # not made by another driver while this one waited
                    _create_empty(path, store, writer)
            storage = rdb_storage(store.optuna_url)  # a database server's tables; a file's version check
            writer.open(store.mlflow_url)  # MLflow's, the same way
            return storage
    except Exception as e:
        if not out_of_space(e):
            raise
        for path in new_files:
            path.unlink(missing_ok=True)
        raise StoreError(
            f"no space left on the disk of the store ({store.describe()}): nothing was recorded; free some space",
            "--store",
        ) from e


def _create_empty(path: Path, store: Store, writer: MlflowWriter | InlineWriter) -> None:
    """A store's optuna.db or mlflow.db, empty: copied from the cache (``empty_databases``), where MLflow
    makes its schema (by the writer, which opens the store's own after)."""
    if path.name == "optuna.db":
        key = f"optuna-{optuna.__version__}-sqlalchemy-{sqlalchemy.__version__}"
        empty_databases.create(path, key, lambda url: rdb_storage(url).engine.dispose())
        return
    key = f"mlflow-{version('mlflow')}-sqlalchemy-{sqlalchemy.__version__}"
    empty_databases.create(path, key, writer.open)
    empty_databases.point_default_experiment(path, store.artifacts)


def archive(storage: optuna.storages.BaseStorage, name: str) -> str:
    """``--new``: the study copied whole to ``NAME@YYYYmmdd-HHMMSS``, then removed. The copy carries
    ``archiving: true`` (set on the study before it is copied, so the copy has it from its first row) until it
    holds every trial; a copy a kill interrupted is never listed (``sweeps.list_sweeps``) and is removed by
    the next ``--new``, and the study itself is removed only after its copy is whole: nothing is lost."""
    for summary in storage.get_all_studies():  # copies an earlier --new left half made
        if summary.study_name.startswith(f"{name}@") and summary.user_attrs.get(ARCHIVING):
            optuna.delete_study(study_name=summary.study_name, storage=storage)
    original = optuna.load_study(study_name=name, storage=storage)
    original.set_user_attr(ARCHIVING, True)
    archived = f"{name}@{datetime.now():%Y%m%d-%H%M%S}"
    optuna.copy_study(from_study_name=name, from_storage=storage, to_storage=storage, to_study_name=archived)
    copy = optuna.load_study(study_name=archived, storage=storage)
    if len(copy.get_trials(deepcopy=False)) != len(original.get_trials(deepcopy=False)):
        optuna.delete_study(study_name=archived, storage=storage)
        original.set_user_attr(ARCHIVING, False)
        raise StoreError(f"the copy of study {name!r} came out short; it is left as it was", "--new")
    copy.set_user_attr(ARCHIVING, False)
    optuna.delete_study(study_name=name, storage=storage)
    return archived


def open_study(sweep: Sweep, storage: optuna.storages.BaseStorage, new: bool, console: Console) -> optuna.Study:
    name = sweep.spec.name
    if new and name in {s.study_name for s in storage.get_all_studies()}:
        archived = archive(storage, name)
        console.print(f"previous study {name!r} kept as {archived!r}; starting a fresh one")
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        directions=sweep.directions,
        sampler=sweep.sampler,
        pruner=sweep.pruner,
        load_if_exists=True,
    )
    if study.trials and sweep.spec.sampler.seed is not None:
        # A study that goes on (run again, resumed): the same seed would draw the finished trials' points
        # again. Offset it by the trials already there, so a rerun is still reproducible but new.
        reseeded = sweep.spec.sampler.model_copy(update={"seed": sweep.spec.sampler.seed + len(study.trials)})
        study.sampler = samplers.build_sampler(sweep.spec.model_copy(update={"sampler": reseeded}), sweep.source)
    study.set_metric_names(sweep.metrics)
    if study.user_attrs.get(ARCHIVING):  # a --new a kill interrupted: this study was never removed
        study.set_user_attr(ARCHIVING, False)
    record_definition(study, sweep, console)
    study.set_user_attr("trainable", sweep.spec.trainable)
    study.set_user_attr("space_file", sweep.source)
    for params, number in sweep.reruns:
        study.enqueue_trial(params, user_attrs={RERUN_OF_ATTR: number})
    if sweep.enqueued:
        seen = [t.params for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        for point in sweep.enqueued:
            if point not in seen:
                study.enqueue_trial(point, skip_if_exists=True)
    return study


def record_definition(study: optuna.Study, sweep: Sweep, console: Console) -> None:
    """The study keeps what defines its search; a change ``check_store`` let through (--accept-change) is
    appended to its ``definition_changes``, and the trials asked from now on carry ``definition_version``."""
    new = sweep_definition(sweep)
    old = study_definition(study)
    if old is not None and (changed := differences(old, new)):
        history = [*study.user_attrs.get(CHANGES_ATTR, []), change_record(changed, len(study.trials))]
        study.set_user_attr(CHANGES_ATTR, history)
        console.print(
            f"the search of {study.study_name} changed ({'; '.join(changed)}): recorded on the study as change "
            f"{len(history)}; its trials from now on carry {VERSION_ATTR} = {len(history)}",
            highlight=False,
            soft_wrap=True,
        )
    if old != new:
        study.set_user_attr(DEFINITION_ATTR, new)


def definition_version(study: optuna.Study) -> int:
    """How many times the study's definition was changed: its trials from now on carry this number."""
    return len(study.user_attrs.get(CHANGES_ATTR, []))


def existing_study(storage: optuna.storages.BaseStorage, name: str) -> optuna.Study | None:
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None


def close_orphans(store: Store, study: optuna.Study, console: Console) -> None:
    """A sweep run again after its driver was killed: close what that driver left RUNNING (this one holds
    the driver lock, so that driver is dead), so nothing stays RUNNING for ever."""
    if not _parent_running(store, study.study_name):
        return
    from mlflow.tracking import MlflowClient  # only here: a driver was lost

    from search.stores.reconcile import close_lost, close_parent

    client = MlflowClient(store.mlflow_url)
    parent = latest_parent_run(client, study.study_name)
    if parent is None or parent.info.status != "RUNNING":
        return
    lost, _ = close_lost(store, study, client, parent)
    close_parent(client, parent)
    console.print(
        f"the previous run of {study.study_name} lost its driver: {len(lost)} trial(s) it left running are "
        "marked FAIL (hpsearch resume finishes such a run instead of starting a new one)",
        highlight=False,
        soft_wrap=True,
    )


def _parent_running(store: Store, name: str) -> bool:
    """Whether any parent run of the sweep is RUNNING, read off MLflow's tables where they are SQL (the
    driver then needs no MLflow, unless one is); elsewhere (a tracking server), assumed so."""
    if not is_sql(store.mlflow_url):
        return True
    sql = (
        "SELECT 1 FROM runs r JOIN experiments e ON e.experiment_id = r.experiment_id "
        "JOIN tags t ON t.run_uuid = r.run_uuid AND t.key = :role AND t.value = 'sweep' "
        "WHERE e.name = :name AND r.status = 'RUNNING' AND r.lifecycle_stage = 'active' LIMIT 1"
    )
    return bool(select(store.mlflow_url, sql, {"role": ROLE_TAG, "name": name}))

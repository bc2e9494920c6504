"""What a store holds: every sweep (Optuna study) with its trial counts, best value and last activity,
and the space each sweep ran with."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import yaml
from optuna.trial import TrialState

from search.errors import SweepError
from search.names import ROLE_TAG
from search.space.constraints import all_hold
from search.stores.store import Store
from search.stores.study_tables import close, open_for_reading

if TYPE_CHECKING:  # MLflow costs a second to import: `hpsearch sweeps` reads the study alone
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

SPACE_ARTIFACT = "space.yaml"  # the space as the sweep ran it, on its parent MLflow run


@dataclass
class SweepRow:
    name: str
    direction: str
    counts: dict[str, int]
    best: float | None
    last_ran: datetime | None
    front: int | None = None  # a trade-off's: how many trials are on its Pareto front


def load_study(store: Store, name: str, storage: optuna.storages.BaseStorage | None = None) -> optuna.Study:
    """A sweep's study, through the one door to the study storage (``infra.rdb_storage``: its timeouts);
    ``storage``: one opened for reading already (``require_sweeps``'), which the read-only commands use."""
    if storage is None:
        from search.stores.infra import rdb_storage

        storage = rdb_storage(store.optuna_url)
    return optuna.load_study(study_name=name, storage=storage)


def objective_names(study: optuna.Study) -> list[str]:
    """The study's metric names; for a study made without them, value (one objective) or value0, value1..."""
    n = len(study.directions)
    return study.metric_names or (["value"] if n == 1 else [f"value{i}" for i in range(n)])


def require_store(store: Store) -> None:
    if not store.exists():
        raise SweepError(f"no sweeps in {store.root}: run `hpsearch run SPACE --store {store.root}` first", "--store")


def require_sweeps(store: Store, names: list[str]) -> optuna.storages.BaseStorage:
    """Every name must be a study in the store; an unknown one is an error listing the known ones. Returns
    the storage it read (``study_tables.open_for_reading``: it may write nothing), to load them from."""
    require_store(store)
    storage = open_for_reading(store.optuna_url)
    known = [s.study_name for s in storage.get_all_studies()]
    for name in names:
        if name not in known:
            close(storage)
            raise SweepError(f"unknown sweep {name!r} in {store.root} (known: {', '.join(known) or 'none'})", name)
    return storage


def list_sweeps(store: Store) -> list[SweepRow]:
    require_store(store)
    storage = open_for_reading(store.optuna_url)
    rows = []
    try:
        for summary in storage.get_all_studies():
            if "@" in summary.study_name and summary.user_attrs.get("archiving"):
                continue  # an archive a kill left half copied (`run --new` removes it): not a sweep
            trials = storage.get_all_trials(storage.get_study_id_from_name(summary.study_name), deepcopy=False)
            counts = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
            done = [t for t in trials if t.state == TrialState.COMPLETE and t.values]
            complete = [t.values[0] for t in done if all_hold(t.constraints)]
            direction = summary.directions[0].name.lower()
            best = (max if direction == "maximize" else min)(complete) if complete else None
            times = [t.datetime_complete or t.datetime_start for t in trials if t.datetime_start]
            row = SweepRow(summary.study_name, direction, counts, best, max(times) if times else None)
            if len(summary.directions) > 1:
                row.best, row.front = None, len(load_study(store, summary.study_name, storage).best_trials)
            rows.append(row)
    finally:
        close(storage)
    return sorted(rows, key=lambda r: r.last_ran or datetime.min, reverse=True)


def recorded_space(store: Store, parent_run_id: str, study_attrs: dict[str, Any]) -> dict[str, Any] | None:
    """The space as a sweep ran it: its parent run's space.yaml, else (the driver died before that artifact
    was written) the copy the study keeps; None if neither holds it."""
    import tempfile

    from search.readback import run_files

    try:
        with tempfile.TemporaryDirectory() as tmp:
            with open(run_files.fetch_of(store, parent_run_id, SPACE_ARTIFACT, Path(tmp))) as f:
                return yaml.safe_load(f) or {}
    except OSError:
        return study_attrs.get("space")


def latest_parent_run(client: MlflowClient, sweep: str) -> Run | None:
    """The most recent ``hpsearch run`` of a sweep: its parent run in the sweep's experiment."""
    exp = client.get_experiment_by_name(sweep)
    if exp is None:
        return None
    runs = client.search_runs(
        [exp.experiment_id],
        f"tags.`{ROLE_TAG}` = 'sweep'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None

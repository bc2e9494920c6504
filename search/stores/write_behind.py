"""Write-behind for running trials: each store gets a trial's steps in one write a second, not one per step.

A trial that reports often (a fused group's members, a fast model, a no-op) spent most of the driver's
time on per-step SQL: an Optuna transaction and an MLflow ``log_batch`` for every step, about 7 ms
together on SQLite, against about 1 ms of Ray's own work. Here the steps of a running trial are kept
and written together:

* when its oldest unwritten step is ``FLUSH_S`` old (the driver's loop asks about ten times a second),
  so the dashboard and the MLflow UI lag a running trial by about a second;
* before the study is told how the trial ended, so a trial the study holds as finished has every step
  in both stores; a SIGKILL loses at most the last second of trials that were still running, and those
  end FAIL (``stopped: driver lost``) on resume and run again.

Pruning is unchanged: the pruner judges a trial on every value it reported, written or not.

``StudyWrites`` writes one trial's intermediate values and user attributes in a single RDB transaction.
Optuna has no public call for that, so it uses ``RDBStorage``'s own helpers (search/private_parts.py); with
another storage, or an Optuna whose internals moved, each is written at once through ``Trial.report`` and
``Trial.set_user_attr`` (same result, slower).
``RunWrites`` does the same for MLflow runs: it hands a run's pending steps, parameters and tags to the
MLflow writer (mlflow_writer.py) in one call, and the writer splits them to ``log_batch``'s limits
(``batches``) or, on a SQL store, writes the steps in bulk (metric_rows.py).

``tell`` is the study's tell without reading the finished trial back (Optuna's own ``_tell_with_warning``;
``study.tell`` where that moved).
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Sequence

import optuna
from optuna.trial import TrialState

log = logging.getLogger(__name__)

FLUSH_S = 1.0  # the most a running trial's written record lags what it reported


# What a run is sent, as MLflow's entities of the same names hold it. The driver never imports MLflow (a
# second and a half, on a sweep's start); the writer process makes MLflow's entities of these.
class Metric(NamedTuple):
    key: str
    value: float
    timestamp: int  # ms since the epoch
    step: int


class Param(NamedTuple):
    key: str
    value: str


class RunTag(NamedTuple):
    key: str
    value: str


# MLflow's log_batch accepts at most this many entries per call (and per kind).
_BATCH_TOTAL, _BATCH_PARAMS, _BATCH_TAGS = 1000, 100, 100


@dataclass
class _Pending:
    since: float  # when the oldest unwritten entry came
    values: dict[int, float] = field(default_factory=dict)  # step -> intermediate value
    attrs: dict[str, Any] = field(default_factory=dict)


class StudyWrites:
    """Unwritten intermediate values and user attributes of running Optuna trials."""

    def __init__(self, flush_s: float = FLUSH_S) -> None:
        self.flush_s = flush_s
        self._pending: dict[int, tuple[optuna.Trial, _Pending]] = {}  # trial number -> what it waits for

    def _entry(self, trial: optuna.Trial) -> _Pending:
        if trial.number not in self._pending:
            self._pending[trial.number] = (trial, _Pending(time.monotonic()))
        return self._pending[trial.number][1]

    def report(self, trial: optuna.Trial, value: float, step: int) -> None:
        """``trial.report``, written later. The trial's own view has the value now, as ``Trial.report``
        leaves it, so ``trial.should_prune()`` judges it."""
        if _behind(trial) is None:
            trial.report(value, step)
            return
        cached = trial._cached_frozen_trial
        if step in cached.intermediate_values:
            return  # Optuna keeps a step's first value
        cached.intermediate_values[step] = float(value)
        self._entry(trial).values[step] = float(value)

    def set_attr(self, trial: optuna.Trial, key: str, value: Any) -> None:
        if _behind(trial) is None:
            trial.set_user_attr(key, value)
            return
        self._entry(trial).attrs[key] = value

    def flush(self, trial: optuna.Trial) -> None:
        item = self._pending.pop(trial.number, None)
        if item is not None:
            _write(trial, item[1])

    def flush_due(self) -> None:
        now = time.monotonic()
        for trial, pending in list(self._pending.values()):
            if now - pending.since >= self.flush_s:
                self.flush(trial)

    def flush_all(self) -> None:
        for trial, _ in list(self._pending.values()):
            self.flush(trial)


@functools.cache
def _rdb_storage_class() -> type | None:
    """Optuna's ``RDBStorage``, where the internals this module uses are where Optuna 5.0 has them
    (search/private_parts.py); None in an Optuna where they moved. Looked up once a process."""
    try:
        from optuna.storages import RDBStorage
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session  # noqa: F401 - used by _write
    except ImportError:  # pragma: no cover - another Optuna
        return None
    known = (
        hasattr(RDBStorage, "_set_trial_attr_without_commit")
        and hasattr(models.TrialModel, "find_or_raise_by_id")
        and hasattr(models.TrialIntermediateValueModel, "intermediate_value_to_stored_repr")
    )
    return RDBStorage if known else None


def _behind(trial: optuna.Trial) -> Any:
    """The trial's ``RDBStorage`` where its writes can wait (``_rdb_storage_class``, and the trial's own
    cached view for the pruner to judge). None: each write goes through Optuna's public calls, at once."""
    rdb = _rdb_storage_class()
    backend = getattr(trial.storage, "_backend", trial.storage)
    known = (
        rdb is not None
        and isinstance(backend, rdb)
        and hasattr(trial, "_trial_id")
        and getattr(trial, "_cached_frozen_trial", None) is not None
    )
    return backend if known else None


def _write(trial: optuna.Trial, pending: _Pending) -> None:
    """One transaction on the trial's RDB storage (``_behind``)."""
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session
    from sqlalchemy import insert

    backend = _behind(trial)
    to_stored = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr
    set_attr = backend._set_trial_attr_without_commit
    with _create_scoped_session(backend.scoped_session) as session:
        row = models.TrialModel.find_or_raise_by_id(trial._trial_id, session)
        backend.check_trial_is_updatable(trial._trial_id, row.state)
        rows = []
        for step, value in sorted(pending.values.items()):
            stored, kind = to_stored(value)
            rows.append(
                {
                    "trial_id": trial._trial_id,
                    "step": step,
                    "intermediate_value": stored,
                    "intermediate_value_type": kind,
                }
            )
        if rows:  # one INSERT for all of them (new steps only: StudyWrites.report keeps a step's first value)
            session.execute(insert(models.TrialIntermediateValueModel), rows)
        if pending.attrs and not _upsert_attrs(session, backend.engine.name, trial._trial_id, pending.attrs):
            for key, value in pending.attrs.items():
                set_attr(session, models.TrialUserAttributeModel, trial._trial_id, key, value)


def tell(study: optuna.Study, trial: optuna.Trial, values: float | Sequence[float] | None, state: TrialState) -> None:
    """``study.tell``, without what it does after: read the finished trial back from the storage and copy
    it, for a caller that has no use for it (about 3 ms a trial on SQLite). Optuna's own tell where its
    internals moved.

    A PRUNED trial may be told its values: Optuna's tell takes none and gives a pruned trial its last
    step's value, which is not the trial's value under ``value: best`` (a curve 0.5, 0.9, 0.3 pruned at
    step 3 has 0.9). Told here as Optuna tells one (the sampler's ``after_trial``, then the storage),
    with the caller's values. The pruners and TPE read a pruned trial's steps, never its value.
    """
    if state == TrialState.PRUNED and values is not None:
        _tell_pruned(study, trial, [values] if isinstance(values, (int, float)) else list(values))
        return
    try:
        from optuna.study._tell import _tell_with_warning
    except ImportError:
        study.tell(trial, values, state=state)
        return
    _tell_with_warning(study=study, trial=trial, value_or_values=values, state=state)


def _tell_pruned(study: optuna.Study, trial: optuna.Trial, values: list[float]) -> None:
    if not hasattr(trial, "_trial_id"):  # private (search/private_parts.py): Optuna's own tell, its value
        study.tell(trial, state=TrialState.PRUNED)
        return
    storage, trial_id = trial.storage, trial._trial_id
    frozen = storage.get_trial(trial_id)
    if frozen.state != TrialState.RUNNING:
        raise ValueError(f"Cannot tell a {frozen.state.name} trial.")
    if len(values) != len(study.directions):
        raise ValueError(f"{len(values)} values for a study of {len(study.directions)} objectives")
    values = [float(v) for v in values]
    if (local := getattr(study, "_thread_local", None)) is not None:
        local.cached_all_trials = None  # as Optuna's tell: the study's cached trials are stale now
    try:
        from optuna.pruners import _filter_study

        judged = _filter_study(study, frozen)
    except ImportError:
        judged = study
    try:
        study.sampler.after_trial(judged, frozen, TrialState.PRUNED, values)
    finally:
        storage.set_trial_state_values(trial_id, TrialState.PRUNED, values)


def _upsert_attrs(session: Any, dialect: str, trial_id: int, attrs: dict[str, Any]) -> bool:
    """A trial's user attributes in one statement: the upsert Optuna makes for one (``RDBStorage.
    _set_trial_attr_without_commit``), for all of them. Optuna's own, one by one, read the trial again for
    each (about 2 ms apiece, five a trial). False where the database has no such upsert (Optuna's then)."""
    import json
    import sqlite3

    from optuna.storages._rdb import models

    if dialect == "sqlite" and sqlite3.sqlite_version_info >= (3, 24, 0):
        from sqlalchemy.dialects.sqlite import insert
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        return False
    model = models.TrialUserAttributeModel
    rows = [{"trial_id": trial_id, "key": key, "value_json": json.dumps(value)} for key, value in attrs.items()]
    statement = insert(model).values(rows)
    upsert = statement.on_conflict_do_update(
        index_elements=[model.trial_id, model.key], set_={"value_json": statement.excluded.value_json}
    )
    session.execute(upsert)
    return True


@dataclass
class _RunPending:
    since: float
    metrics: list[Metric] = field(default_factory=list)
    params: list[Param] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)


class RunWrites:
    """Unwritten metrics, parameters and tags of open MLflow runs, by run key; ``log_batch(key, metrics,
    params, tags)`` writes them, split to MLflow's limits (a writer of ``mlflow_writer.py``)."""

    def __init__(self, log_batch: Callable[[str, list, list, list], None], flush_s: float = FLUSH_S) -> None:
        self.log_batch = log_batch
        self.flush_s = flush_s
        self._pending: dict[str, _RunPending] = {}  # run key -> what it waits for

    def log(
        self,
        key: str,
        metrics: Iterable[Metric] = (),
        params: Iterable[Param] = (),
        tags: dict[str, str] | None = None,
    ) -> None:
        pending = self._pending.setdefault(key, _RunPending(time.monotonic()))
        pending.metrics.extend(metrics)
        pending.params.extend(params)
        pending.tags.update(tags or {})

    def flush(self, key: str) -> None:
        pending = self._pending.pop(key, None)
        if pending is not None:
            tags = [RunTag(k, v) for k, v in pending.tags.items()]
            self.log_batch(key, pending.metrics, pending.params, tags)

    def flush_due(self) -> None:
        now = time.monotonic()
        for key, pending in list(self._pending.items()):
            if now - pending.since >= self.flush_s:
                self.flush(key)

    def flush_all(self) -> None:
        for key in list(self._pending):
            self.flush(key)


def batches(
    metrics: list[Metric], params: list[Param], tags: list[RunTag]
) -> Iterator[tuple[list[Metric], list[Param], list[RunTag]]]:
    """Calls within log_batch's limits: params and tags first (a batch that holds both has its parameters
    in before its first metrics), metrics in their order."""
    while metrics or params or tags:
        p, params = params[:_BATCH_PARAMS], params[_BATCH_PARAMS:]
        t, tags = tags[:_BATCH_TAGS], tags[_BATCH_TAGS:]
        room = _BATCH_TOTAL - len(p) - len(t)
        m, metrics = metrics[:room], metrics[room:]
        yield m, p, t

"""A run's metric steps written to MLflow's SQL tables in bulk, in the writer process.

MLflow's SQL store turns every metric into an ORM object and flushes them one by one: about 3,500 rows a
second here, so a trial that reported 10,000 steps of 100 metrics kept the driver waiting three minutes
after it trained. The same rows go in here with one executemany per batch, into MLflow's own tables as
MLflow's models describe them (``metrics``, and ``latest_metrics`` kept as MLflow keeps it: the row with the
greatest step, then timestamp, then value), after MLflow's own check of each metric.

It is used only where it can be exact: a tracking URI that is a SQL database, whose tables have the
columns this module writes, on an MLflow that has the pieces it reads. Anything else (an HTTP tracking
server, another MLflow) goes through ``MlflowClient.log_batch`` as before; so does a batch that repeats a
row already written, whose de-duplication MLflow's path does.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

from mlflow.entities import Metric

log = logging.getLogger(__name__)

COLUMNS = {"key", "value", "timestamp", "step", "is_nan", "run_uuid"}  # of both tables, as MLflow 3 has them
ROWS_PER_WRITE = 20_000  # one transaction: a lock on SQLite held for a fraction of a second


def bulk_writer(
    client: Any, wrote: Callable[[int], None] = lambda n: None
) -> Callable[[str, list[Metric]], None] | None:
    """``write(run_id, metrics)`` for this client's store, or None where only ``log_batch`` is exact.
    ``wrote(n)`` is called after each part of a large batch is in (the writer's progress)."""
    try:
        import sqlalchemy.exc
        from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
        from mlflow.utils.validation import _validate_metric

        store = client._tracking_client.store
    except (ImportError, AttributeError) as e:  # another MLflow: its own path, which is always right
        log.info("metric rows go through MlflowClient.log_batch: %s", e)
        return None
    if not isinstance(store, SqlAlchemyStore):
        return None
    tables = (SqlMetric.__table__, SqlLatestMetric.__table__)
    private = ("ManagedSessionMaker", "_check_run_is_active", "_get_run")  # search/private_parts.py
    if any(set(t.c.keys()) != COLUMNS for t in tables) or not all(hasattr(store, name) for name in private):
        log.info("metric rows go through MlflowClient.log_batch: MLflow's metric tables are not the known ones")
        return None

    def write(run_id: str, metrics: list[Metric]) -> None:
        for start in range(0, len(metrics), ROWS_PER_WRITE):
            part = metrics[start : start + ROWS_PER_WRITE]
            try:
                _write(store, tables, _validate_metric, run_id, part)
            except Exception as e:  # a row written before (this part rolled back whole): MLflow's way
                if not isinstance(e.__cause__ or e, sqlalchemy.exc.IntegrityError):
                    raise
                for first in range(0, len(part), 1000):
                    rows = [Metric(m.key, m.value, m.timestamp, m.step) for m in part[first : first + 1000]]
                    client.log_batch(run_id, metrics=rows)  # MLflow's entities (the driver sends its own)
            wrote(len(part))

    return write


def _row(run_id: str, m: Metric) -> dict[str, Any]:
    """As MLflow stores a value: NaN as 0 with is_nan, infinities as the largest finite floats."""
    value = float(m.value)
    is_nan = math.isnan(value)
    if is_nan:
        value = 0.0
    elif math.isinf(value):
        value = math.copysign(1.7976931348623157e308, value)
    return {
        "run_uuid": run_id,
        "key": m.key,
        "value": value,
        "timestamp": m.timestamp,
        "step": m.step,
        "is_nan": is_nan,
    }


def _newer(a: dict[str, Any], b: Any) -> bool:
    """MLflow's order of a key's values: by step, then timestamp, then value."""
    return (a["step"], a["timestamp"], a["value"]) > (b["step"], b["timestamp"], b["value"])


def _write(store: Any, tables: tuple, validate: Callable[..., None], run_id: str, metrics: list[Metric]) -> None:
    from sqlalchemy import insert, select, update

    metric_table, latest_table = tables
    rows, seen = [], set()
    for i, m in enumerate(metrics):
        validate(m.key, m.value, m.timestamp, m.step, path=f"metrics[{i}]")
        row = _row(run_id, m)
        identity = (row["key"], row["timestamp"], row["step"], row["value"], row["is_nan"])
        if identity not in seen:  # a row given twice in one batch is one row, as in MLflow's path
            seen.add(identity)
            rows.append(row)
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["key"] not in latest or _newer(row, latest[row["key"]]):
            latest[row["key"]] = row
    with store.ManagedSessionMaker(read_only=False) as session:
        store._check_run_is_active(store._get_run(run_uuid=run_id, session=session))
        session.execute(insert(metric_table), rows)
        keys = sorted(latest)
        stored = {}
        for start in range(0, len(keys), 500):  # bound the parameters of one query
            query = select(latest_table).where(
                latest_table.c.run_uuid == run_id, latest_table.c.key.in_(keys[start : start + 500])
            )
            stored.update({r.key: r._asdict() for r in session.execute(query)})
        new = [row for key, row in latest.items() if key not in stored]
        if new:
            session.execute(insert(latest_table), new)
        for key, row in latest.items():
            if key in stored and _newer(row, stored[key]):
                session.execute(
                    update(latest_table)
                    .where(latest_table.c.run_uuid == run_id, latest_table.c.key == key)
                    .values(value=row["value"], timestamp=row["timestamp"], step=row["step"], is_nan=row["is_nan"])
                )

"""The last value of a few metrics of many MLflow runs, for ``compare``'s columns.

Asked run by run through ``MlflowClient`` that is one round trip per trial, after importing MLflow (about
3 s on two cores). On a store whose runs are in a SQL database (the store's own ``mlflow.db``, or a
PostgreSQL/MySQL tracking URI) it is one query on MLflow's own ``latest_metrics`` table, which MLflow keeps
for exactly this (``search/stores/metric_rows.py`` keeps it as MLflow does). An HTTP tracking server, or a
database whose tables are not as MLflow 3 makes them, is asked through MLflow's client as before.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from search.stores.infra import in_list, is_sql, select
from search.stores.store import Store

log = logging.getLogger(__name__)


def latest(store: Store, run_ids: Sequence[str], keys: Sequence[str]) -> dict[str, dict[str, float]]:
    """run id -> {key: its latest value} for the ``keys`` each run has."""
    run_ids, keys = list(dict.fromkeys(run_ids)), list(keys)
    if not run_ids or not keys:
        return {}
    url = store.mlflow_url
    if is_sql(url):
        try:
            return _from_table(url, run_ids, keys)
        except Exception as e:  # noqa: BLE001 - not MLflow 3's tables: MLflow's client knows them
            log.debug("reading latest_metrics failed (%s): asking MLflow's client", e)
    return _from_client(url, run_ids, keys)


def _from_table(url: str, run_ids: list[str], keys: list[str]) -> dict[str, dict[str, float]]:
    runs, run_params = in_list("r", run_ids)
    names, key_params = in_list("k", keys)
    rows = select(
        url,
        f"SELECT run_uuid, key, value, is_nan FROM latest_metrics WHERE run_uuid IN {runs} AND key IN {names}",
        run_params | key_params,
    )
    out: dict[str, dict[str, float]] = {}
    for run_id, key, value, is_nan in rows:
        out.setdefault(run_id, {})[key] = float("nan") if is_nan else float(value)
    return out


def _from_client(url: str, run_ids: list[str], keys: list[str]) -> dict[str, dict[str, float]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(url)
    out: dict[str, dict[str, float]] = {}
    for run_id in run_ids:
        metrics = client.get_run(run_id).data.metrics
        out[run_id] = {k: metrics[k] for k in keys if k in metrics}
    return out

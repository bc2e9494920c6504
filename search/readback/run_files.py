"""A trial's MLflow run as ``best`` and ``export`` read it: its parent run, and the files it logged.

Through ``MlflowClient`` that costs an import of MLflow (about 3 s on two cores) for three facts. On a
store whose runs are in a SQL database (the store's own ``mlflow.db``, or a PostgreSQL/MySQL tracking URI)
the run's row and its parent tag are read from MLflow's own ``runs`` and ``tags`` tables, and an artifact
under a ``file:`` root is a file on this machine, read where it lies. Anything else (an HTTP tracking
server, an S3 artifact root, tables not as MLflow 3 makes them) is asked through MLflow's client.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from search.names import PARENT_TAG
from search.stores.infra import is_sql, select
from search.stores.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunFiles:
    run_id: str
    parent_id: str | None
    artifact_uri: str


def run_of(store: Store, run_id: str) -> RunFiles | None:
    """The run's parent and artifact root; None when the store has no such run."""
    url = store.mlflow_url
    if is_sql(url):
        try:
            return _from_tables(url, run_id)
        except Exception as e:  # noqa: BLE001 - not MLflow 3's tables: MLflow's client knows them
            log.debug("reading the runs table failed (%s): asking MLflow's client", e)
    return _from_client(url, run_id)


def has(store: Store, run: RunFiles, path: str) -> bool:
    """Whether the run logged the artifact ``path`` (``folder/name``)."""
    local = _local(run.artifact_uri, path)
    if local is not None:
        return local.is_file()
    folder, _, _ = path.rpartition("/")
    return any(a.path == path for a in _client(store.mlflow_url).list_artifacts(run.run_id, folder or None))


def fetch(store: Store, run: RunFiles, path: str, into: Path) -> Path:
    """The artifact as a file on this machine: where it lies for a ``file:`` root, else downloaded into
    ``into``. ``FileNotFoundError`` when the run has no such artifact, or it cannot be fetched."""
    local = _local(run.artifact_uri, path)
    if local is not None:
        if not local.is_file():
            raise FileNotFoundError(local)
        return local
    from mlflow.exceptions import MlflowException

    try:
        return Path(_client(store.mlflow_url).download_artifacts(run.run_id, path, str(into)))
    except MlflowException as e:
        raise FileNotFoundError(f"{run.run_id}: {path} ({e})") from e


def fetch_of(store: Store, run_id: str, path: str, into: Path) -> Path:
    """``fetch`` given the run's id: ``FileNotFoundError`` also when the store has no such run."""
    run = run_of(store, run_id)
    if run is None:
        raise FileNotFoundError(f"no MLflow run {run_id}")
    return fetch(store, run, path, into)


def uri(run: RunFiles, path: str) -> str:
    return f"{run.artifact_uri}/{path}"


def _local(artifact_uri: str, path: str) -> Path | None:
    parsed = urlparse(artifact_uri)
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
        return Path(unquote(parsed.path)) / path
    if parsed.scheme == "" and artifact_uri.startswith("/"):
        return Path(artifact_uri) / path
    return None


def _from_tables(url: str, run_id: str) -> RunFiles | None:
    rows = select(
        url,
        "SELECT r.artifact_uri, t.value FROM runs r LEFT JOIN tags t ON t.run_uuid = r.run_uuid AND t.key = :k "
        "WHERE r.run_uuid = :r",
        {"r": run_id, "k": PARENT_TAG},
    )
    return RunFiles(run_id, rows[0][1], rows[0][0]) if rows else None


def _from_client(url: str, run_id: str) -> RunFiles | None:
    from mlflow.exceptions import MlflowException

    try:
        run = _client(url).get_run(run_id)
    except MlflowException:
        return None
    return RunFiles(run_id, run.data.tags.get(PARENT_TAG), run.info.artifact_uri)


def _client(url: str):  # noqa: ANN202 - an MlflowClient: MLflow is imported only where it is asked
    from mlflow.tracking import MlflowClient

    return MlflowClient(url)

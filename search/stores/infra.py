"""Reaching the services a sweep writes to, and failing fast when one is out of reach.

Every check here runs before anything is written: a wrong ``--address``, ``--storage`` or ``--tracking-uri``
is one line and exit 2, not a sweep that dies after creating half its records (and not the minutes of
retries Ray, SQLAlchemy and MLflow would each spend on their own).
"""

from __future__ import annotations

import http.client
import socket
import sqlite3
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from search.errors import UnreachableError, shorten
from search.stores.store import Store, hide_password

if TYPE_CHECKING:  # SQLAlchemy and Optuna's storage are imported where used: the read-only commands need neither
    import optuna
    from sqlalchemy.engine import Connection

CONNECT_TIMEOUT_S = 5


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the OS picks it), for a server or a Ray this machine starts."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def answers(address: tuple[str, int], timeout: float = 1.0) -> bool:
    """Something accepts a TCP connection at ``address`` now (a Ray GCS, a server)."""
    try:
        with socket.create_connection(address, timeout=timeout):
            return True
    except OSError:
        return False


def engine_kwargs(url: str) -> dict[str, Any]:
    """SQLite waits for the driver's lock; a database server gets a short connect timeout."""
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 30}}
    if url.startswith(("postgresql", "mysql")):
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}, "pool_pre_ping": True}
    return {}


def is_sql(url: str) -> bool:
    """A database URL whose tables can be read with SQL (not an HTTP tracking server, not a file store)."""
    return url.startswith(("sqlite", "postgresql", "mysql"))


def sqlite_path(url: str) -> Path | None:
    """The file of a plain ``sqlite:///PATH`` URL (no options), else None."""
    if not url.startswith("sqlite:///") or "?" in url:
        return None
    path = url.removeprefix("sqlite:///")
    return Path(path) if path and path != ":memory:" else None


def readable_sqlite(url: str) -> Path | None:
    """The file of a plain ``sqlite:///`` URL that Python's sqlite3 can read, opened read-only, now: it exists,
    and no rollback journal lies beside it (a write under way, or one a killed process left half done, which
    only a connection that may write rolls back). None: read it through SQLAlchemy (or Optuna's storage)."""
    path = sqlite_path(url)
    if path is None or not path.is_file() or path.with_name(f"{path.name}-journal").exists():
        return None
    return path


def read_only(path: Path) -> sqlite3.Connection:
    """A SQLite file opened to read, waiting for a writer's lock as the stores' engines do."""
    timeout = engine_kwargs("sqlite")["connect_args"]["timeout"]
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=timeout)


def select(url: str, sql: str, params: dict[str, Any]) -> list[tuple]:
    """The rows of one query (``:name`` parameters; ``in_list`` for IN): a plain SQLite file is read with
    Python's sqlite3, which a read-only command imports in no time; another database through SQLAlchemy."""
    if (path := readable_sqlite(url)) is not None:
        with closing(read_only(path)) as db:
            return db.execute(sql, params).fetchall()
    from sqlalchemy import text

    with connected(url) as db:
        return [tuple(row) for row in db.execute(text(sql), params)]


def in_list(name: str, values: list[Any]) -> tuple[str, dict[str, Any]]:
    """``(:name0, :name1, ...)`` and its parameters, for ``select``'s ``IN``."""
    params = {f"{name}{i}": v for i, v in enumerate(values)}
    return "(" + ", ".join(f":{k}" for k in params) + ")", params


@contextmanager
def connected(url: str) -> Iterator[Connection]:
    """One connection to a SQL database, with the timeouts of ``engine_kwargs``, disposed of after."""
    from sqlalchemy import create_engine

    engine = create_engine(url, **engine_kwargs(url))
    try:
        with engine.connect() as db:
            yield db
    finally:
        engine.dispose()


def rdb_storage(url: str) -> optuna.storages.RDBStorage:
    """The Optuna storage. Opening one creates its tables and stamps their version when the database is
    new; another process opening it at the same moment (a dashboard started first, a script polling the
    study) makes one of the two fail on the other's rows. The loser opens it again, and finds them."""
    import optuna
    from sqlalchemy.exc import IntegrityError, OperationalError

    for attempt in range(3):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs(url))
        except (IntegrityError, OperationalError) as e:
            raced = isinstance(e, IntegrityError) or "already exists" in str(e)
            if not raced or attempt == 2:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def check_storage(url: str) -> None:
    """The Optuna storage URL parses, its driver is installed, and the database answers; a SQLite file's
    folder exists (SQLite creates the file, not the folders above it)."""
    if url.startswith("sqlite"):
        path = url.partition(":///")[2].split("?")[0]
        if path and path != ":memory:" and not Path(path).expanduser().parent.is_dir():
            raise UnreachableError(
                f"the folder of the SQLite file {path} does not exist: create it, or name another", "--storage"
            )
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    try:
        shown = hide_password(make_url(url).render_as_string(hide_password=True))
    except ArgumentError:
        raise UnreachableError(f"not a database URL: {hide_password(url)!r}", "--storage") from None
    try:
        engine = create_engine(url, **engine_kwargs(url))
    except ModuleNotFoundError as e:
        hint = " (pip install 'psycopg[binary]')" if e.name and e.name.startswith("psycopg") else ""
        raise UnreachableError(f"{shown}: its database driver {e.name} is not installed{hint}", "--storage") from None
    except ArgumentError:
        raise UnreachableError(
            f"not a database URL Optuna can use: {shown} (postgresql://, mysql://, sqlite:///)", "--storage"
        ) from None
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as e:
        reason = (str(getattr(e, "orig", None) or e).strip() or type(e).__name__).splitlines()[0]
        reason = hide_password(reason).replace(make_url(url).password or "\0", "***")  # a driver may echo it
        raise UnreachableError(f"cannot reach the Optuna storage {shown}: {reason}", "--storage") from None
    finally:
        engine.dispose()


def check_tracking(uri: str) -> None:
    """An http(s) tracking URI must be a live MLflow server (its /health answers OK)."""
    if urlparse(uri).scheme not in ("http", "https"):
        return
    shown = hide_password(uri)
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=CONNECT_TIMEOUT_S) as response:
            body = response.read(100).decode(errors="replace").strip()
    except urllib.error.HTTPError as e:
        raise UnreachableError(
            f"{shown} answered {e.code} to /health: not an MLflow server?", "--tracking-uri"
        ) from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise UnreachableError(f"cannot reach the MLflow tracking server {shown}: {reason}", "--tracking-uri") from None
    except (ValueError, http.client.InvalidURL) as e:  # a port that is not a number, ...
        raise UnreachableError(f"not a usable URL: {shown} ({e})", "--tracking-uri") from None
    if body != "OK":
        raise UnreachableError(
            f"{shown}/health answered {shorten(body)}, not OK: not an MLflow server?", "--tracking-uri"
        )


_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # + empty SETTINGS


def speaks_grpc(address: tuple[str, int], timeout: float = 2.0) -> bool:
    """Whether what listens at ``address`` is a gRPC server, as Ray's GCS is: it answers HTTP/2's preface with
    a SETTINGS frame. Something else on the port (a web server, a silent socket) would leave ``ray.init``
    waiting for minutes."""
    try:
        with socket.create_connection(address, timeout=timeout) as conn:
            conn.settimeout(timeout)
            conn.sendall(_HTTP2_PREFACE)
            frame = b""
            while len(frame) < 9:
                chunk = conn.recv(9 - len(frame))
                if not chunk:
                    return False
                frame += chunk
            return frame[3] == 0x04  # a SETTINGS frame
    except OSError:
        return False


def check_ray_address(address: str | None) -> None:
    """``host:port`` (the head's GCS) or ``ray://host:port`` (Ray Client) must accept a connection."""
    if address in (None, "", "auto", "local"):
        return
    target = address.removeprefix("ray://").removeprefix("http://").removeprefix("https://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise UnreachableError(f"a Ray address is host:port or ray://host:port (got {address!r})", "--address")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise UnreachableError(f"cannot reach the Ray cluster at {address}: {e.strerror or e}", "--address") from None
    if address.startswith(("http://", "https://")):
        return
    if not speaks_grpc((host, int(port)), timeout=CONNECT_TIMEOUT_S):
        raise UnreachableError(
            f"something listens at {address}, but not Ray: it does not answer as a Ray head's GCS (gRPC) does; "
            "give the head's GCS address (ray start --head prints it; port 6379 by default)",
            "--address",
        )


def check_storage_path(path: str) -> None:
    """An object-store URL must name a filesystem pyarrow (Ray Tune's storage layer) can open."""
    if "://" not in path:
        return
    import pyarrow.fs

    try:
        pyarrow.fs.FileSystem.from_uri(path)
    except Exception as e:  # pyarrow raises several types for bad schemes, credentials, buckets
        reason = str(e).splitlines()[0]
        raise UnreachableError(f"cannot use {path} for Ray results: {reason}", "--storage-path") from None


def check_reachable(store: Store, address: str | None) -> None:
    """All of a sweep's services, before the first write."""
    check_ray_address(address)
    if store.storage is not None:  # the store's own optuna.db is made with its folder
        check_storage(store.storage)
    check_tracking(store.mlflow_url)
    check_storage_path(store.ray_results)

"""Where a sweep's records live: one local directory by default, or a team's own services.

By default ``--store DIR`` holds everything: the Optuna study (optuna.db), the MLflow runs (mlflow.db)
and artifacts, Ray's results. Each part can be moved out on its own: ``storage`` an Optuna RDB URL
(postgresql://...), ``tracking_uri`` an MLflow tracking server (http://...), ``storage_path`` a directory
every Ray node can reach or an object-store URL (s3://...).
"""

from __future__ import annotations

import errno
import os
import re
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from search.errors import StoreError

# How a full disk reads once SQLite, SQLAlchemy, MLflow or Ray has wrapped it (Ray passes tracebacks as text).
OUT_OF_SPACE = ("database or disk is full", "no space left on device", "disk quota exceeded")


def out_of_space(error: BaseException | None) -> bool:
    """Whether a write failed because the disk is full, anywhere along the chain of causes."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(text in str(error).lower() for text in OUT_OF_SPACE):
            return True
        error = error.__cause__ or error.__context__
    return False


# Query parameters that carry a secret (libpq's password=, a token, an API key, ...), masked like a password.
SECRET_PARAMS = r"(?:password|passwd|pwd|token|access_token|auth_token|secret|api_key|apikey|key|sslpassword)"


def hide_password(url: str) -> str:
    """``http://user:secret@host`` -> ``http://user:***@host``, and ``?password=secret`` -> ``?password=***``
    (tokens and keys alike): for every message and log line."""
    # By pattern, not by parsing: a URL too broken to parse must not have its password shown either.
    url = re.sub(r"(://[^/@:]*:)[^/]*@", r"\1***@", url)
    return re.sub(rf"([?&;]{SECRET_PARAMS}=)[^&;#\s]*", r"\1***", url, flags=re.IGNORECASE)


SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]*")  # a sweep's name, or an archive's (NAME@time)


def tracking_credentials_to_env(uri: str) -> str:
    """``http://user:pw@host:5000`` -> ``http://host:5000``, with the user and password where MLflow takes
    them (``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``, which the MLflow writer process
    inherits): MLflow's client cannot use credentials in the URI itself, and they are never shown."""
    from urllib.parse import unquote, urlsplit, urlunsplit

    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or "@" not in parts.netloc:
        return uri
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    os.environ["MLFLOW_TRACKING_USERNAME"] = unquote(user)
    if password:
        os.environ["MLFLOW_TRACKING_PASSWORD"] = unquote(password)
    return urlunsplit(parts._replace(netloc=host))


@dataclass(frozen=True)
class Store:
    root: Path
    storage: str | None = None
    tracking_uri: str | None = None
    storage_path: str | None = None

    @classmethod
    def at(
        cls,
        path: str | Path,
        storage: str | None = None,
        tracking_uri: str | None = None,
        storage_path: str | None = None,
    ) -> "Store":
        if storage_path and "://" not in storage_path:
            storage_path = str(Path(storage_path).expanduser().resolve())
        tracking_uri = tracking_credentials_to_env(tracking_uri) if tracking_uri else None
        return cls(Path(path).expanduser().resolve(), storage or None, tracking_uri or None, storage_path or None)

    @property
    def optuna_url(self) -> str:
        return self.storage or f"sqlite:///{self.root / 'optuna.db'}"

    @property
    def mlflow_url(self) -> str:
        return self.tracking_uri or f"sqlite:///{self.root / 'mlflow.db'}"

    @property
    def artifacts(self) -> Path | None:
        """The local artifact root; None with a tracking server, which keeps (or proxies) artifacts itself."""
        return None if self.tracking_uri else self.root / "artifacts"

    @property
    def ray_results(self) -> str:
        return self.storage_path or str(self.root / "ray")

    @property
    def shown_storage(self) -> str:
        """The Optuna URL with any password hidden, for messages and logs."""
        from sqlalchemy.engine import make_url

        try:
            return hide_password(make_url(self.optuna_url).render_as_string(hide_password=True))
        except Exception:  # noqa: BLE001 - a URL too broken to parse is still shown, masked by pattern
            return hide_password(self.optuna_url)

    @property
    def shown_tracking(self) -> str:
        """The MLflow URI with any password hidden."""
        return hide_password(self.mlflow_url)

    def describe(self) -> str:
        if not (self.storage or self.tracking_uri or self.storage_path):
            return str(self.root)
        return f"study {self.shown_storage}, runs {self.shown_tracking}, Ray results {self.ray_results}"

    def exists(self) -> bool:
        """Whether there may be studies to read (a database server always may)."""
        return self.storage is not None or (self.root / "optuna.db").is_file()

    def local_databases(self) -> list[Path]:
        """The SQLite files of the parts that live in the store's folder (not on a service)."""
        return [
            self.root / name for name, url in (("optuna.db", self.storage), ("mlflow.db", self.tracking_uri)) if not url
        ]

    def check(self) -> None:
        """A damaged local store is one line before anything is written to it: a file where its folder
        should be, or a database file SQLite cannot read (truncated, overwritten)."""
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"{self.root} is a file, not a folder: point --store at a folder", "--store")
        for path in self.local_databases():
            if not path.exists():
                continue
            try:
                # mode=rw, not ro: a driver killed mid-write leaves a hot journal, which SQLite must roll
                # back before it can read (a read-only connection calls such a healthy store damaged).
                # rw never creates a file, and quick_check writes nothing else.
                with closing(sqlite3.connect(f"file:{path}?mode=rw", uri=True)) as db:
                    problem = db.execute("PRAGMA quick_check").fetchone()[0]
            except sqlite3.Error as e:
                problem = str(e)
            if problem != "ok":
                raise StoreError(
                    f"{path} is damaged ({problem.splitlines()[0]}): move it aside to start afresh, or restore it",
                    "--store",
                )

    def path_for(self, folder: str, name: str, suffix: str = "") -> Path:
        """``<store>/<folder>/<name><suffix>`` for a sweep's own file (its lock, its report). A study name is
        data from a database that any Optuna client can write: one that would lead outside the folder
        (``../../victim``) or is no plain name is refused before anything is touched."""
        base = (self.root / folder).resolve()
        path = (base / f"{name}{suffix}").resolve()
        if not SAFE_NAME.fullmatch(name) or path.parent != base:
            raise StoreError(f"a study named {name!r} cannot name a file in the store (letters, digits, . _ - @)", name)
        return path

    def create(self) -> None:
        local = [self.root] + ([self.artifacts] if self.artifacts else [])
        if "://" not in self.ray_results:
            local.append(Path(self.ray_results))
        for d in local:
            d.mkdir(parents=True, exist_ok=True)

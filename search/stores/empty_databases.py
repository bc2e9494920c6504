"""A new local store's two SQLite files, copied from empty ones made once per machine.

Making them is most of what a new store costs: MLflow builds its schema by running its Alembic migrations
one by one (3-5 s on two cores), Optuna's takes about a second. Every sweep on a fresh folder (and every
test) paid that. An empty database made by the same Optuna or MLflow version, with the same SQLAlchemy, is
the same file, so it is made once, kept in the user's cache, and copied in milliseconds.

The cache is ``$HPSEARCH_CACHE``, else ``$XDG_CACHE_HOME/hpsearch``, else ``~/.cache/hpsearch``. An empty
database is written there under a name of its own and renamed into place, so two processes making it at
once both end with a whole one. Where the cache cannot be written or read, the store's database is made in
place, as before, and at once (MLflow would retry an unwritable file for about 100 s).

A store trusts nothing in the cache it has not checked: whoever could write a template would decide where
every new store's artifacts go. So the cache is used only where this user alone can write it (it and each
template owned by the user, not writable by group or others), and each copy is checked before it becomes a
store's database (``trusted``): SQLite's own check, the tables of its kind (an Optuna database under
MLflow's name is no MLflow database), no view and no trigger but one that only refuses, and no row but
those an empty database of its kind holds (its schema version, MLflow's ``Default`` experiment and
workspace). A template that fails is made again; the copy that failed is not used.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sqlite3
import stat
import time
import uuid
from contextlib import closing, suppress
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

Make = Callable[[str], None]  # makes an empty database at a sqlite:/// URL


def cache_dir() -> Path:
    if os.environ.get("HPSEARCH_CACHE"):
        return Path(os.environ["HPSEARCH_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hpsearch"


def create(path: Path, name: str, make: Make) -> None:
    """``path`` (absent) becomes the empty database ``name`` names (a version key such as
    ``mlflow-3.17.0-sqlalchemy-2.0.44``): a copy of the cached one, or made in place where there is none
    or its copy is not ``trusted``."""
    kind = name.partition("-")[0]
    template = _template(name, kind, make)
    if template is not None:
        partial = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
        try:
            shutil.copyfile(template, partial)
            if trusted(partial, kind):  # the copy itself, so a template swapped after its check is caught
                os.replace(partial, path)
                return
            log.warning("the cached empty database %s is not what it should be: the store's is made in place", template)
        finally:
            partial.unlink(missing_ok=True)
    make(f"sqlite:///{path}")


def _template(name: str, kind: str, make: Make) -> Path | None:
    """The cached empty database, made now if it is missing or not ``trusted``; None where the cache fails
    or others than this user could write it."""
    folder = cache_dir()
    template = folder / f"{name}.db"
    if _own(folder) and _own(template) and trusted(template, kind):
        return template
    partial = folder / f".{name}.{uuid.uuid4().hex[:8]}.db"
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not _own(folder):
            raise PermissionError(f"{folder} is not a folder only this user can write")
        # The file is made first, alone (SQLite takes an empty file as an empty database): a cache that cannot
        # be written fails here at once, where MLflow would retry for about 100 s.
        os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600))
        make(f"sqlite:///{partial}")
        if not trusted(partial, kind):
            raise sqlite3.DatabaseError(f"the empty database made at {partial} fails the check of its kind")
        os.replace(partial, template)
        return template
    except Exception as e:  # noqa: BLE001 - the cache only saves time: any failure makes the database in place
        log.debug("no cached empty database in %s (%s): making it in place", folder, e)
        return None
    finally:
        with suppress(OSError):  # a cache that is no folder has nothing to clean
            partial.unlink(missing_ok=True)


def _own(path: Path) -> bool:
    """``path`` (no link) is this user's and no one else may write it."""
    try:
        st = path.lstat()
    except OSError:
        return False
    if stat.S_ISLNK(st.st_mode) or not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
        return False
    return st.st_uid == os.getuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


# What an empty database of each kind must have, and the only rows it may hold (table -> rows at most).
TABLES = {
    "optuna": {"studies", "trials", "trial_values", "trial_params", "version_info", "alembic_version"},
    "mlflow": {"experiments", "runs", "metrics", "latest_metrics", "params", "tags", "alembic_version"},
}
ROWS = {
    "optuna": {"version_info": 1, "alembic_version": 1},
    "mlflow": {"alembic_version": 1, "experiments": 1, "workspaces": 1},
}
# A trigger that only refuses a change (MLflow's own keep a secret's name): its body is one RAISE.
_REFUSING_TRIGGER = re.compile(r"\bBEGIN\s+SELECT\s+RAISE\s*\(\s*ABORT\s*,\s*'[^']*'\s*\)\s*;\s*END\s*\Z", re.I)


def trusted(path: Path, kind: str) -> bool:
    """``path`` is an empty database of ``kind`` (optuna, mlflow) and nothing more: see the module's doc."""
    if kind not in TABLES or not path.is_file() or path.is_symlink():
        return False
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                return False
            schema = db.execute("SELECT type, name, sql FROM sqlite_master").fetchall()
            tables = {name for kind_, name, _ in schema if kind_ == "table"}
            if not TABLES[kind] <= tables:
                return False
            for what, _, sql in schema:
                if what == "view" or (what == "trigger" and not _REFUSING_TRIGGER.search(sql or "")):
                    return False
            for table in tables - {"sqlite_sequence", "sqlite_stat1"}:
                quoted = table.replace('"', '""')
                count = db.execute(f'SELECT count(*) FROM "{quoted}"').fetchone()[0]
                if count > ROWS[kind].get(table, 0):
                    return False
            if kind == "mlflow":
                return db.execute("SELECT experiment_id, name FROM experiments").fetchall() in ([], [(0, "Default")])
            return True
    except sqlite3.Error:
        return False


def point_default_experiment(path: Path, artifacts: Path | None) -> None:
    """MLflow's ``Default`` experiment (id 0), which every MLflow database holds, made now and keeping its
    artifacts in the store (made in place, MLflow points it at ``./mlruns`` under the current directory)."""
    now = int(time.time() * 1000)
    location = str((artifacts or path.parent / "artifacts") / "0")
    with closing(sqlite3.connect(path)) as db, db:
        # MLflow's own table (search/private_parts.py): where its columns moved, the experiment stays as made
        columns = {row[1] for row in db.execute("PRAGMA table_info(experiments)")}
        if not {"artifact_location", "creation_time", "last_update_time"} <= columns:
            log.warning("MLflow's experiments table is not the known one: its Default experiment is left as made")
            return
        db.execute(
            "UPDATE experiments SET artifact_location = ?, creation_time = ?, last_update_time = ? "
            "WHERE experiment_id = 0",
            (location, now, now),
        )

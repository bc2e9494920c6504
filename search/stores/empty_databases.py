"""A new local store's two SQLite files, copied from empty ones made once per machine.

Making them is most of what a new store costs: MLflow builds its schema by running its Alembic migrations
one by one (3-5 s on two cores), Optuna's takes about a second. Every sweep on a fresh folder (and every
test) paid that. An empty database made by the same Optuna or MLflow version, with the same SQLAlchemy, is
the same file, so it is made once, kept in the user's cache, and copied in milliseconds.

The cache is ``$HPSEARCH_CACHE``, else ``$XDG_CACHE_HOME/hpsearch``, else ``~/.cache/hpsearch``. An empty
database is written there under a name of its own and renamed into place, so two processes making it at
once both end with a whole one; one that fails SQLite's check is made again. Where the cache cannot be
written or read, the store's database is made in place, as before.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
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
    ``mlflow-3.17.0-sqlalchemy-2.0.44``): a copy of the cached one, or made in place where there is none."""
    template = _template(name, make)
    if template is None:
        make(f"sqlite:///{path}")
        return
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    try:
        shutil.copyfile(template, partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _template(name: str, make: Make) -> Path | None:
    """The cached empty database, made now if it is missing or damaged; None where the cache fails."""
    folder = cache_dir()
    template = folder / f"{name}.db"
    if _whole(template):
        return template
    partial = folder / f".{name}.{uuid.uuid4().hex[:8]}.db"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        make(f"sqlite:///{partial}")
        if not _whole(partial):
            raise sqlite3.DatabaseError(f"the empty database made at {partial} fails SQLite's check")
        os.replace(partial, template)
        return template
    except Exception as e:  # noqa: BLE001 - the cache only saves time: any failure makes the database in place
        log.debug("no cached empty database in %s (%s): making it in place", folder, e)
        return None
    finally:
        with suppress(OSError):  # a cache that is no folder has nothing to clean
            partial.unlink(missing_ok=True)


def _whole(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            return db.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    except sqlite3.Error:
        return False


def point_default_experiment(path: Path, artifacts: Path | None) -> None:
    """MLflow's ``Default`` experiment (id 0), which every MLflow database holds, made now and keeping its
    artifacts in the store (made in place, MLflow points it at ``./mlruns`` under the current directory)."""
    now = int(time.time() * 1000)
    location = str((artifacts or path.parent / "artifacts") / "0")
    with closing(sqlite3.connect(path)) as db, db:
        db.execute(
            "UPDATE experiments SET artifact_location = ?, creation_time = ?, last_update_time = ? "
            "WHERE experiment_id = 0",
            (location, now, now),
        )

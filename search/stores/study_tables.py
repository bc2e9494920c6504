"""Optuna's SQLite tables read with Python's own ``sqlite3``: a read-only storage for the commands that only
read a study (``sweeps``, ``best``, ``export``, ``compare``, ``report``).

Opening Optuna's ``RDBStorage`` costs about 0.7 s on a 2-core machine before it reads a row: SQLAlchemy
and Optuna's ORM models imported, the tables' creation checked, and Alembic's migration scripts parsed to
check the schema's version. ``optuna studies`` pays the same. This storage reads the same tables, as
``RDBStorage`` would build its ``FrozenTrial``s (values and intermediate values with their infinities and
NaN, parameters through their distributions, datetimes from naive UTC to local time), and writes nothing.

It is used only where it is known to be right: a SQLite file whose schema is the revision this module was
written for (``REVISION``, which ``tests/test_study_tables.py`` checks the installed Optuna still makes,
and whose every read it checks against ``RDBStorage``'s), with no rollback journal beside it (a driver
killed mid-write leaves one, which a read-only connection cannot roll back). Any other database, another
revision, or a file with a journal is opened with ``RDBStorage`` (``open_for_reading``), whose own checks,
recovery and messages then apply.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Container, Iterator
from contextlib import closing, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from optuna.distributions import json_to_distribution
from optuna.storages import BaseStorage
from optuna.study import StudyDirection

try:  # private (search/private_parts.py); an Optuna where it moved reads through its own RDBStorage
    from optuna.study._frozen import FrozenStudy
except ImportError:  # pragma: no cover - another Optuna
    FrozenStudy = None
from optuna.trial import FrozenTrial, TrialState

from search.stores.infra import rdb_storage, read_only, readable_sqlite

REVISION = "v3.2.0.a"  # Optuna's Alembic revision of the tables read here (the head since Optuna 3.2; 5.0 stamps it)
_SPECIAL = {"INF_POS": float("inf"), "INF_NEG": float("-inf"), "NAN": float("nan")}


def open_for_reading(url: str) -> BaseStorage:
    """A storage to read the study database at ``url``: this module's for an Optuna SQLite file at the known
    revision, else Optuna's own ``RDBStorage`` (``infra.rdb_storage``)."""
    path = readable_sqlite(url)
    if path is not None and revision(path) == REVISION and FrozenStudy is not None:
        return StudyTables(path)
    return rdb_storage(url)


def close(storage: BaseStorage) -> None:
    """Let go of a storage ``open_for_reading`` gave: an ``RDBStorage``'s connections (this module's are
    closed after each read)."""
    if (engine := getattr(storage, "engine", None)) is not None:
        engine.dispose()


def revision(path: Path) -> str | None:
    """The Alembic revision Optuna stamped on the file's tables; None if it has none or cannot be read."""
    try:
        with closing(read_only(path)) as db:
            row = db.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        return None
    return row[0] if row else None


def _local(text: str | None) -> datetime | None:
    """A datetime as Optuna stores it (naive UTC text) as Optuna returns it (naive local time)."""
    if text is None:
        return None
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).astimezone().replace(tzinfo=None)


def _number(value: float | None, kind: str) -> float:
    return value if kind == "FINITE" else _SPECIAL[kind]


class StudyTables(BaseStorage):
    """A read-only ``BaseStorage`` over one Optuna SQLite file (see the module's docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with closing(read_only(self.path)) as db:
            yield db

    # -- studies --------------------------------------------------------------------------------------

    def get_study_id_from_name(self, study_name: str) -> int:
        missing = f"No such study {study_name}."
        return self._one("SELECT study_id FROM studies WHERE study_name = ?", study_name, missing)

    def get_study_name_from_id(self, study_id: int) -> str:
        missing = f"No study with study_id {study_id} exists."
        return self._one("SELECT study_name FROM studies WHERE study_id = ?", study_id, missing)

    def _one(self, sql: str, arg: Any, missing: str) -> Any:
        """The one value ``sql`` selects for ``arg``; ``KeyError(missing)``, as RDBStorage's, when none."""
        with self._db() as db:
            row = db.execute(sql, (arg,)).fetchone()
        if row is None:
            raise KeyError(missing)
        return row[0]

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        with self._db() as db:
            return self._directions(db).get(study_id, [])

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        with self._db() as db:
            return self._attrs(db, "study_user_attributes", "study_id").get(study_id, {})

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        with self._db() as db:
            return self._attrs(db, "study_system_attributes", "study_id").get(study_id, {})

    def get_all_studies(self) -> list[Any]:
        with self._db() as db:
            directions = self._directions(db)
            user = self._attrs(db, "study_user_attributes", "study_id")
            system = self._attrs(db, "study_system_attributes", "study_id")
            rows = db.execute("SELECT study_id, study_name FROM studies ORDER BY study_id").fetchall()
        return [
            FrozenStudy(
                study_name=name,
                direction=None,
                directions=directions.get(study_id, []),
                user_attrs=user.get(study_id, {}),
                system_attrs=system.get(study_id, {}),
                study_id=study_id,
            )
            for study_id, name in rows
        ]

    @staticmethod
    def _directions(db: sqlite3.Connection) -> dict[int, list[StudyDirection]]:
        out: dict[int, list[StudyDirection]] = {}
        for study_id, direction in db.execute(
            "SELECT study_id, direction FROM study_directions ORDER BY study_id, objective"
        ):
            out.setdefault(study_id, []).append(StudyDirection[direction])
        return out

    @staticmethod
    def _attrs(db: sqlite3.Connection, table: str, owner: str, where: str = "", args: tuple = ()) -> dict[int, dict]:
        out: dict[int, dict[str, Any]] = {}
        for key_id, key, value in db.execute(f"SELECT {owner}, key, value_json FROM {table} {where}", args):
            out.setdefault(key_id, {})[key] = json.loads(value)
        return out

    # -- trials ---------------------------------------------------------------------------------------

    def get_trial(self, trial_id: int) -> FrozenTrial:
        trials = self._trials("t.trial_id = ?", (trial_id,))
        if not trials:
            raise KeyError(f"No trial with trial_id {trial_id} exists.")
        return trials[0]

    def get_best_trial(self, study_id: int) -> FrozenTrial:
        """The query ``RDBStorage`` sends, word for word, so that of trials tied on the best value the same one
        is the best (SQLite's order among equal rows is its plan's, not a rule)."""
        directions = self.get_study_directions(study_id)
        if len(directions) > 1:
            raise RuntimeError("Best trial can be obtained only for single-objective optimization.")
        order = "DESC" if directions[0] == StudyDirection.MAXIMIZE else "ASC"
        with self._db() as db:
            row = db.execute(
                "SELECT trials.trial_id AS trials_trial_id \nFROM trials JOIN trial_values ON trials.trial_id = "
                "trial_values.trial_id \nWHERE trials.study_id = ? AND trials.state = ? AND trial_values.objective = ? "
                "ORDER BY CASE WHEN (trial_values.value_type = ?) THEN ? WHEN (trial_values.value_type = ?) THEN ? "
                f"WHEN (trial_values.value_type = ?) THEN ? END {order}, trial_values.value {order}\n LIMIT ? OFFSET ?",
                (study_id, "COMPLETE", 0, "INF_NEG", -1, "FINITE", 0, "INF_POS", 1, 1, 0),
            ).fetchone()
        if row is None:
            raise ValueError("No trials are completed yet.")
        return self.get_trial(row[0])

    def get_all_trials(
        self, study_id: int, deepcopy: bool = True, states: Container[TrialState] | None = None
    ) -> list[FrozenTrial]:
        self.get_study_name_from_id(study_id)  # a missing study is an error, as RDBStorage's
        trials = self._trials("t.study_id = ?", (study_id,))
        return trials if states is None else [t for t in trials if t.state in states]

    def _trials(self, where: str, args: tuple) -> list[FrozenTrial]:
        """The trials matching ``where`` (on ``trials t``), each whole, in trial_id order: one query a table."""
        joined = f"JOIN trials t ON t.trial_id = x.trial_id WHERE {where}"
        with self._db() as db:
            rows = db.execute(
                f"SELECT t.trial_id, t.number, t.state, t.datetime_start, t.datetime_complete FROM trials t "
                f"WHERE {where} ORDER BY t.trial_id",
                args,
            ).fetchall()
            values: dict[int, dict[int, float]] = {}
            for trial_id, objective, value, kind in db.execute(
                f"SELECT x.trial_id, x.objective, x.value, x.value_type FROM trial_values x {joined}", args
            ):
                values.setdefault(trial_id, {})[objective] = _number(value, kind)
            steps: dict[int, dict[int, float]] = {}
            for trial_id, step, value, kind in db.execute(
                f"SELECT x.trial_id, x.step, x.intermediate_value, x.intermediate_value_type "
                f"FROM trial_intermediate_values x {joined}",
                args,
            ):
                steps.setdefault(trial_id, {})[step] = _number(value, kind)
            params: dict[int, list[tuple[str, float, str]]] = {}
            for trial_id, name, value, dist in db.execute(
                f"SELECT x.trial_id, x.param_name, x.param_value, x.distribution_json FROM trial_params x {joined} "
                "ORDER BY x.param_id",
                args,
            ):
                params.setdefault(trial_id, []).append((name, value, dist))
            user = self._attrs(db, "trial_user_attributes x", "x.trial_id", joined, args)
            system = self._attrs(db, "trial_system_attributes x", "x.trial_id", joined, args)
        trials = []
        for trial_id, number, state, start, complete in rows:
            dists = {name: json_to_distribution(dist) for name, _, dist in params.get(trial_id, [])}
            by_objective = values.get(trial_id)
            trials.append(
                FrozenTrial(
                    number=number,
                    state=TrialState[state],
                    value=None,
                    values=[by_objective[i] for i in sorted(by_objective)] if by_objective else None,
                    datetime_start=_local(start),
                    datetime_complete=_local(complete),
                    params={name: dists[name].to_external_repr(value) for name, value, _ in params.get(trial_id, [])},
                    distributions=dists,
                    user_attrs=user.get(trial_id, {}),
                    system_attrs=system.get(trial_id, {}),
                    intermediate_values=steps.get(trial_id, {}),
                    trial_id=trial_id,
                )
            )
        return trials

    # -- writes: none ---------------------------------------------------------------------------------

    def _read_only(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} reads {self.path}; it writes nothing")

    create_new_study = delete_study = set_study_user_attr = set_study_system_attr = _read_only
    create_new_trial = set_trial_param = set_trial_state_values = set_trial_intermediate_value = _read_only
    set_trial_user_attr = set_trial_system_attr = _read_only

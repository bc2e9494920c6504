"""search/stores/study_tables.py: Optuna's SQLite tables read with sqlite3 give what Optuna's RDBStorage gives,
trial by trial and field by field, and any file it was not written for is read by RDBStorage."""

import math
import sqlite3
import time

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from search.stores import study_tables
from search.stores.infra import sqlite_path
from search.stores.study_tables import REVISION, StudyTables, open_for_reading

SPACE = {
    "lr": FloatDistribution(1e-5, 1e-1, log=True),
    "width": IntDistribution(8, 64, step=8),
    "act": CategoricalDistribution(["relu", 1, None, 2.5]),
}


@pytest.fixture
def url(tmp_path, monkeypatch) -> str:
    """Studies of every shape a sweep leaves, written by Optuna; local time is not UTC, so a datetime read
    without its conversion from the stored UTC is caught."""
    monkeypatch.setenv("TZ", "America/Sao_Paulo")
    time.tzset()
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    one = optuna.create_study(study_name="one", storage=url, direction="maximize")
    one.set_user_attr("space", {"config": {"epochs": 3}, "choices": [1, "a", None]})
    cases = [  # (state, value, intermediate values, user attrs, constraints)
        (TrialState.COMPLETE, 0.5, {1: 0.1, 2: math.nan, 3: math.inf}, {"mlflow_run_id": "abc"}, [0.2, -1.0]),
        (TrialState.COMPLETE, 0.5, {1: -math.inf}, {}, None),
        (TrialState.COMPLETE, 0.7, {}, {"nested": {"a": [1, 2]}}, [-0.5]),
        (TrialState.PRUNED, None, {1: 0.3, 5: 0.2}, {"pruned_at_step": 5}, None),
        (TrialState.FAIL, None, {}, {"fail_reason": "diverged"}, None),
        (TrialState.RUNNING, None, {1: 0.9}, {}, None),
        (TrialState.COMPLETE, -math.inf, {}, {}, None),
    ]
    for state, value, steps, attrs, constraints in cases:
        trial = one.ask(SPACE)
        for step, v in steps.items():
            trial.report(v, step)
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        if constraints is not None:
            one._storage.set_trial_system_attr(trial._trial_id, "constraints", constraints)
        if state != TrialState.RUNNING:
            one.tell(trial, value if state == TrialState.COMPLETE else None, state=state)
    for name, direction, values in (
        ("ties", "maximize", [0.3, 0.7, 0.7, 0.7, 0.1]),
        ("low", "minimize", [0.4, 0.2, 0.2, 0.9]),
    ):
        study = optuna.create_study(study_name=name, storage=url, direction=direction)
        for v in values:
            study.tell(study.ask(SPACE), v)
    trade = optuna.create_study(study_name="trade", storage=url, directions=["minimize", "maximize"])
    trade.set_metric_names(["cost", "accuracy"])
    for values in ([1.0, 0.5], [2.0, 0.9], [0.5, 0.2], [3.0, math.inf], [2.5, 0.8]):
        trade.tell(trade.ask(SPACE), values)
    yield url
    monkeypatch.delenv("TZ")
    time.tzset()


def shape(t: optuna.trial.FrozenTrial) -> tuple:
    """Every field of a trial, NaN written as text (so NaN equals NaN) and dicts in key order."""
    return (
        t.number, t.state, repr(t.values), t.datetime_start, t.datetime_complete, repr(t.params),
        repr(sorted(t.distributions.items())), repr(sorted(t.user_attrs.items())),
        repr(sorted(t.system_attrs.items())), repr(sorted(t.intermediate_values.items())), t._trial_id,
    )  # fmt: skip


def both(url: str) -> tuple[optuna.storages.RDBStorage, StudyTables]:
    tables = open_for_reading(url)
    assert isinstance(tables, StudyTables)
    return optuna.storages.RDBStorage(url), tables


def test_the_installed_optuna_still_writes_the_revision_this_reader_was_written_for(url):
    assert study_tables.revision(sqlite_path(url)) == REVISION


def test_studies_read_as_optuna_reads_them(url):
    rdb, tables = both(url)
    assert [(s.study_name, s._study_id, s.directions, s.user_attrs, s.system_attrs) for s in rdb.get_all_studies()] == [
        (s.study_name, s._study_id, s.directions, s.user_attrs, s.system_attrs) for s in tables.get_all_studies()
    ]
    for name in ("one", "ties", "low", "trade"):
        study_id = rdb.get_study_id_from_name(name)
        assert tables.get_study_id_from_name(name) == study_id
        assert tables.get_study_name_from_id(study_id) == name
        assert tables.get_study_directions(study_id) == rdb.get_study_directions(study_id)
        assert tables.get_study_user_attrs(study_id) == rdb.get_study_user_attrs(study_id)
        assert tables.get_study_system_attrs(study_id) == rdb.get_study_system_attrs(study_id)
    with pytest.raises(KeyError):
        tables.get_study_id_from_name("nope")


@pytest.mark.parametrize(
    "states", [None, (TrialState.COMPLETE,), (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)]
)
def test_every_trial_reads_as_optuna_reads_it(url, states):
    rdb, tables = both(url)
    for name in ("one", "ties", "low", "trade"):
        study_id = rdb.get_study_id_from_name(name)
        expected = [shape(t) for t in rdb.get_all_trials(study_id, states=states)]
        assert [shape(t) for t in tables.get_all_trials(study_id, states=states)] == expected
        for t in rdb.get_all_trials(study_id):
            assert shape(tables.get_trial(t._trial_id)) == shape(t)


def test_the_best_trial_is_optunas_ties_and_constraints_included(url):
    rdb, tables = both(url)
    for name in ("one", "ties", "low"):
        expected = optuna.load_study(study_name=name, storage=rdb).best_trial
        assert shape(optuna.load_study(study_name=name, storage=tables).best_trial) == shape(expected), name
    trade = [shape(t) for t in optuna.load_study(study_name="trade", storage=rdb).best_trials]
    assert [shape(t) for t in optuna.load_study(study_name="trade", storage=tables).best_trials] == trade


def test_it_writes_nothing(url):
    _, tables = both(url)
    before = sqlite_path(url).read_bytes()
    with pytest.raises(NotImplementedError, match="writes nothing"):
        tables.set_trial_user_attr(1, "k", "v")
    with pytest.raises(NotImplementedError):
        optuna.load_study(study_name="one", storage=tables).ask()
    assert sqlite_path(url).read_bytes() == before


def test_a_file_of_another_revision_or_a_url_with_options_is_read_by_optuna(url):
    assert isinstance(open_for_reading(url + "?timeout=5"), optuna.storages.RDBStorage)
    path = sqlite_path(url)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE alembic_version SET version_num = 'v9.9.9'")
    with pytest.raises(RuntimeError, match="compatible"):  # Optuna's own check and message
        open_for_reading(url)


def test_a_file_a_killed_writer_left_a_journal_beside_is_read_by_optuna_which_rolls_it_back(url, killed_mid_write):
    path = sqlite_path(url)
    before = optuna.storages.RDBStorage(url).get_study_user_attrs(1)
    killed_mid_write(path, "INSERT INTO study_user_attributes (study_id, key, value_json) VALUES (1, ?, '0')")
    with pytest.raises(sqlite3.OperationalError, match="readonly"):  # what reading it read-only would do
        StudyTables(path).get_all_studies()
    storage = open_for_reading(url)
    assert isinstance(storage, optuna.storages.RDBStorage)
    assert storage.get_study_user_attrs(1) == before  # the half-done write undone
    assert isinstance(open_for_reading(url), StudyTables)  # and then, the journal gone, sqlite3 again

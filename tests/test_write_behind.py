"""Write-behind: a running trial's steps reach each store in one write, and pruning judges them unwritten."""

import logging

import optuna
import pytest

from search.stores.mlflow_writer import InlineWriter
from search.stores.write_behind import Metric, Param, RunWrites, StudyWrites


@pytest.fixture(params=["rdb", "memory"])
def study(request, tmp_path):
    """A study on SQLite (one transaction per flush) and in memory (the public calls, one by one)."""
    storage = f"sqlite:///{tmp_path}/optuna.db" if request.param == "rdb" else None
    return optuna.create_study(storage=storage, pruner=optuna.pruners.ThresholdPruner(lower=0.5))


def stored(study: optuna.Study, number: int = 0) -> optuna.trial.FrozenTrial:
    """The trial as another process reads it: from the storage, not from this process's trial object."""
    if study._storage.__class__.__name__ == "InMemoryStorage":
        return study.trials[number]
    fresh = optuna.load_study(study_name=study.study_name, storage=study._storage._backend.url)
    return fresh.trials[number]


def test_steps_wait_for_the_flush_and_then_all_arrive_with_the_attributes(study, monkeypatch):
    from search.stores import write_behind

    made = []
    real = write_behind._write
    monkeypatch.setattr(write_behind, "_write", lambda trial, pending: made.append(pending) or real(trial, pending))
    trial = study.ask()
    writes = StudyWrites(flush_s=3600)
    for step, value in ((1, 0.9), (2, 0.8), (2, 0.1), (3, 0.7)):  # a step seen already keeps its first value
        writes.report(trial, value, step)
    writes.set_attr(trial, "ray_trial_id", "abc")
    writes.flush_due()  # nothing is an hour old
    if study._storage.__class__.__name__ != "InMemoryStorage":
        assert stored(study).intermediate_values == {} and stored(study).user_attrs == {}
    writes.flush(trial)
    assert stored(study).intermediate_values == {1: 0.9, 2: 0.8, 3: 0.7}
    assert stored(study).user_attrs == {"ray_trial_id": "abc"}
    behind = study._storage.__class__.__name__ != "InMemoryStorage"
    assert len(made) == (1 if behind else 0)  # one write for all three steps and the attribute (in memory: none)
    writes.flush(trial)  # nothing left: a second flush writes nothing twice
    writes.flush_all()
    assert len(made) == (1 if behind else 0)
    study.tell(trial, 0.7)
    assert stored(study).state == optuna.trial.TrialState.COMPLETE


def test_attributes_written_again_take_their_latest_value_beside_the_others(study):
    """The attributes go in one upsert: a key written before is updated, not doubled, and the others stay."""
    trial = study.ask()
    writes = StudyWrites(flush_s=3600)
    for key, value in (("ray_trial_id", "abc"), ("parent", "run-1"), ("node", "n1")):
        writes.set_attr(trial, key, value)
    writes.flush(trial)
    writes.set_attr(trial, "node", "n2")
    writes.set_attr(trial, "mlflow_run_id", {"seed": [1, 2]})
    writes.set_attr(trial, "node", "n3")  # the latest of two unwritten values
    writes.flush(trial)
    expected = {"ray_trial_id": "abc", "parent": "run-1", "node": "n3", "mlflow_run_id": {"seed": [1, 2]}}
    assert stored(study).user_attrs == expected


@pytest.mark.parametrize("state", ["COMPLETE", "PRUNED", "FAIL"])
def test_tell_ends_the_trial_as_study_tell_does_and_reads_it_once(study, state, monkeypatch):
    """``tell`` is ``study.tell`` less the read-back of the finished trial it makes for its return value."""
    from search.stores.write_behind import tell

    state = optuna.trial.TrialState[state]
    reads = []
    storage = type(study._storage)
    real = storage.get_trial
    monkeypatch.setattr(storage, "get_trial", lambda self, trial_id: reads.append(trial_id) or real(self, trial_id))
    trials = [study.ask() for _ in range(3)]
    for trial, value in zip(trials, (0.2, 0.9, 0.4)):
        reads.clear()
        tell(study, trial, value if state == optuna.trial.TrialState.COMPLETE else None, state)
        assert reads == [trial._trial_id]  # the check that it may be told; study.tell reads it a second time
    assert [t.state for t in study.trials] == [state] * 3
    expected = [0.2, 0.9, 0.4] if state == optuna.trial.TrialState.COMPLETE else [None] * 3
    assert [stored(study, n).value for n in range(3)] == expected


def test_the_pruner_judges_the_values_not_yet_written(study):
    trial = study.ask()
    writes = StudyWrites(flush_s=3600)
    writes.report(trial, 0.9, 1)
    assert not trial.should_prune()
    writes.report(trial, 0.2, 2)  # below the threshold: pruned, though the storage has no value yet
    assert trial.should_prune()


def test_flush_due_writes_what_is_older_than_flush_s(study):
    trial = study.ask()
    writes = StudyWrites(flush_s=0.0)
    writes.report(trial, 0.9, 1)
    writes.flush_due()
    assert stored(study).intermediate_values == {1: 0.9}


def test_a_finished_trial_refuses_a_late_write(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/optuna.db")
    trial = study.ask()
    writes = StudyWrites()
    writes.report(trial, 0.5, 1)
    study.tell(trial, 0.5)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        writes.flush(trial)


def test_run_writes_split_a_long_trial_within_log_batch_limits(tmp_path):
    """RunWrites hands a run's whole backlog to its writer, which keeps each MLflow call within limits."""
    logging.getLogger("alembic").setLevel(logging.WARNING)
    writer = InlineWriter(f"sqlite:///{tmp_path}/mlflow.db")
    client = writer.client
    writer.create_run("k", client.create_experiment("e"), "trial-0000", {})
    run_id = writer.run_id("k")
    calls = []
    log_batch = client.log_batch

    def counting(run_id, metrics, params, tags):
        calls.append((len(metrics), len(params), len(tags)))
        return log_batch(run_id, metrics=metrics, params=params, tags=tags)

    client.log_batch = counting
    writes = RunWrites(writer.log_batch, flush_s=3600)
    writes.log("k", params=[Param(f"p{i}", str(i)) for i in range(150)])
    writes.log("k", metrics=[Metric("loss", 1.0 / step, 0, step) for step in range(1, 2501)])
    writes.log("k", tags={f"t{i}": "v" for i in range(120)})
    writes.flush_due()
    assert calls == []
    writes.flush("k")
    assert calls and all(m <= 1000 and p <= 100 and t <= 100 and m + p + t <= 1000 for m, p, t in calls)
    run = client.get_run(run_id)
    assert len(run.data.params) == 150 and sum(k.startswith("t") for k in run.data.tags) == 120
    history = client.get_metric_history(run_id, "loss")
    assert sorted(m.step for m in history) == list(range(1, 2501))


def test_an_optuna_whose_internals_moved_gets_each_write_at_once_through_its_public_calls(tmp_path, monkeypatch):
    from optuna.storages import RDBStorage

    from search import private_parts
    from search.stores import write_behind

    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/optuna.db", direction="maximize")
    trial = study.ask()
    assert write_behind._behind(trial) is not None
    with monkeypatch.context() as m:  # as if a release renamed it (Optuna's own writes use it: put back below)
        m.delattr(RDBStorage, "_set_trial_attr_without_commit")
        write_behind._rdb_storage_class.cache_clear()  # looked up once a process: again, for this Optuna
        assert write_behind._behind(trial) is None
        moved = [r.what for r in private_parts.missing()]
        assert moved == ["optuna.storages:RDBStorage._set_trial_attr_without_commit"]
    write_behind._rdb_storage_class.cache_clear()
    assert write_behind._behind(trial) is not None
    monkeypatch.setattr(write_behind, "_behind", lambda trial: None)
    writes = StudyWrites(flush_s=3600)
    for step, value in ((1, 0.9), (2, 0.8), (3, 0.7)):
        writes.report(trial, value, step)
    writes.set_attr(trial, "ray_trial_id", "abc")
    assert stored(study).intermediate_values == {1: 0.9, 2: 0.8, 3: 0.7}  # written at once, no flush
    assert stored(study).user_attrs == {"ray_trial_id": "abc"}

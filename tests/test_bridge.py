"""The bridge alone, no Ray: every test on SQLite (what a sweep writes, read back as another process reads
it) and in memory."""

import itertools
import statistics

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from search.driver.bridge_settings import BridgeSettings
from search.driver.optuna_bridge import OptunaBridge
from search.errors import SamplerError


class BrokenSampler(optuna.samplers.RandomSampler):
    """Samples once, then raises: a sampler failing mid-sweep for a reason no input check can see."""

    def sample_independent(self, study, trial, name, distribution):
        if trial.number >= 1:
            raise RuntimeError("the sampler broke")
        return super().sample_independent(study, trial, name, distribution)


STORAGE: dict[str, str | None] = {"url": None}
NAMES = itertools.count()


@pytest.fixture(autouse=True, params=["sqlite", "memory"])
def storage(request, tmp_path):
    """Each test twice: on SQLite, where a value reaches the study only when the bridge writes it, and in
    memory."""
    STORAGE["url"] = f"sqlite:///{tmp_path / 'bridge.db'}" if request.param == "sqlite" else None
    yield STORAGE["url"]
    STORAGE["url"] = None


def stored(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The study's trials as another process reads them (a fresh storage), or as memory holds them."""
    if STORAGE["url"] is None:
        return study.get_trials()
    return optuna.load_study(study_name=study.study_name, storage=STORAGE["url"]).get_trials()


def test_a_sampler_that_raises_leaves_no_trial_running():
    study = optuna.create_study(sampler=BrokenSampler(seed=0), storage=STORAGE["url"])
    bridge = OptunaBridge(study, BridgeSettings({"x": FloatDistribution(0, 1)}, ["score"], ["max"], n_trials=3))
    assert "x" in bridge.ask("ray-0")
    said = r"the BrokenSampler failed to sample trial 1 \(RuntimeError: the sampler broke\)"
    with pytest.raises(SamplerError, match=said):
        bridge.ask("ray-1")
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.RUNNING, TrialState.FAIL]  # the first is its record's to end; the broken one ended


def make_bridge(n_trials=3, repeats=1, mode="max", pruner=None, seed=0):
    study = optuna.create_study(
        direction="maximize" if mode == "max" else "minimize",
        sampler=optuna.samplers.RandomSampler(seed=seed),
        pruner=pruner or optuna.pruners.NopPruner(),
        storage=STORAGE["url"],
        study_name=f"bridge-{next(NAMES)}",
    )
    bridge = OptunaBridge(
        study, BridgeSettings({"x": FloatDistribution(0, 1)}, ["score"], [mode], n_trials, {"epochs": 4}, repeats)
    )
    return study, bridge


def run(bridge, ray_id, values, final=True, **extra):
    """A trial that reports ``values`` at steps 1.. and ends: what the scheduler and searcher would call."""
    for step, value in enumerate(values, start=1):
        last = step == len(values)
        assert bridge.report(ray_id, {"score": value, "step": step, "final_report": final and last, **extra})
        if bridge.should_prune(ray_id):
            break
    bridge.complete(ray_id, None, error=False)


def test_ask_gives_the_fixed_config_with_the_sampled_values_and_stops_at_the_trial_count():
    study, bridge = make_bridge(n_trials=2)
    configs = [bridge.ask("a"), bridge.ask("b"), bridge.ask("c")]
    assert configs[0]["epochs"] == 4 and 0 <= configs[0]["x"] <= 1 and configs[0]["x"] != configs[1]["x"]
    assert configs[2] is None
    assert [v.number for v in bridge.views()] == [0, 1]
    bridge.flush()  # a running trial's attributes reach the study within a second (write_behind.py)
    assert study.trials[0].user_attrs["ray_trial_id"] == "a"


def test_reports_become_intermediate_values_and_the_best_follows_the_mode():
    for mode, best in (("max", 0.9), ("min", 0.2)):
        study, bridge = make_bridge(n_trials=1, mode=mode)
        bridge.ask("a")
        bridge.report("a", {"score": 0.5, "step": 1})
        bridge.report("a", {"score": 0.9, "step": 2})
        bridge.report("a", {"score": 0.1, "step": 2})  # a step seen already: ignored
        bridge.report("a", {"score": float("nan"), "step": 3})  # not a value the study can hold
        bridge.report("a", {"score": 0.2, "step": 4})
        bridge.flush()  # a running trial's steps are written once a second (write_behind.py): now
        assert stored(study)[0].intermediate_values == {1: 0.5, 2: 0.9, 4: 0.2}
        assert bridge.view("a").best == best and bridge.view("a").last_step == 4
        bridge.complete("a", None, error=False)
        assert study.trials[0].state == TrialState.COMPLETE and study.trials[0].value == best


def test_a_missing_metric_fails_the_trial_naming_what_was_reported():
    study, bridge = make_bridge(n_trials=1)
    bridge.ask("a")
    assert bridge.report("a", {"loss": 0.3, "step": 1}) is False  # the scheduler stops the trial
    bridge.complete("a", None, error=False)
    assert study.trials[0].state == TrialState.FAIL
    assert study.trials[0].user_attrs["fail_reason"] == "metric 'score' was not reported (reported: loss, step)"
    assert bridge.view("a").failure == study.trials[0].user_attrs["fail_reason"]


def test_a_trial_that_reports_no_finite_value_fails():
    study, bridge = make_bridge(n_trials=1)
    bridge.ask("a")
    run(bridge, "a", [float("inf"), float("nan")])
    assert study.trials[0].state == TrialState.FAIL
    assert study.trials[0].user_attrs["fail_reason"] == "no finite value of 'score' was reported"


def test_the_pruner_prunes_a_worse_trial_and_never_at_its_final_report():
    pruner = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    study, bridge = make_bridge(n_trials=3, pruner=pruner)
    for ray_id in "abc":
        bridge.ask(ray_id)
    run(bridge, "a", [0.5, 0.6, 0.7])
    run(bridge, "b", [0.1, 0.1, 0.1])  # below the median at step 1: pruned there
    run(bridge, "c", [0.9, 0.9, 0.1], final=True)  # worse only at its final report: kept
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.COMPLETE]
    assert study.trials[1].user_attrs["pruned_at_step"] == 1 and bridge.view("b").pruned_at == 1
    assert study.trials[1].intermediate_values == {1: 0.1}


def test_repeats_share_one_optuna_trial_told_once_with_the_mean_of_its_seeds():
    study, bridge = make_bridge(n_trials=1, repeats=2)
    first, second = bridge.ask("a"), bridge.ask("b")
    assert first["x"] == second["x"] and (first.get("seed", 0), second["seed"]) == (0, 1)
    assert bridge.ask("c") is None
    run(bridge, "a", [0.4])
    assert study.trials[0].state == TrialState.RUNNING  # one seed is not the configuration
    run(bridge, "b", [0.6])
    (trial,) = study.trials
    assert trial.state == TrialState.COMPLETE and trial.value == pytest.approx(0.5)
    assert trial.user_attrs["repeat_values"] == [0.4, 0.6]
    assert trial.user_attrs["value_std"] == pytest.approx(0.1414, abs=1e-4)
    assert trial.user_attrs["ray_trial_id"] == ["a", "b"]
    assert trial.intermediate_values == {1: 0.4}  # the study's curve is the first seed's


def test_one_failed_seed_fails_its_configuration_with_that_seeds_reason():
    study, bridge = make_bridge(n_trials=1, repeats=2)
    bridge.ask("a"), bridge.ask("b")
    run(bridge, "a", [0.4])
    bridge.report("b", {"score": 0.3, "step": 1})
    bridge.complete("b", None, error=True)
    bridge_fail = study.trials[0]
    assert bridge_fail.state == TrialState.FAIL
    assert bridge_fail.user_attrs["fail_reason"] == "the trial raised an error"
    assert [v.state for v in bridge.views()] == [TrialState.COMPLETE, TrialState.FAIL]


def test_finish_open_fails_interrupted_trials_and_prunes_those_the_sweep_budget_stopped():
    for as_pruned, expected in ((False, TrialState.FAIL), (True, TrialState.PRUNED)):
        study, bridge = make_bridge(n_trials=2, repeats=2)
        bridge.ask("a"), bridge.ask("b"), bridge.ask("c")  # the second configuration's second seed never starts
        run(bridge, "a", [0.4])
        bridge.report("b", {"score": 0.3, "step": 1})
        ended = bridge.finish_open("interrupted", as_pruned=as_pruned)
        assert sorted(ended) == ["b", "c"]
        assert [t.state for t in study.trials] == [expected, expected]
        assert all(t.user_attrs["stopped"] == "interrupted" for t in study.trials)
        assert bridge.finish_open("again", as_pruned=as_pruned) == []  # told once


def test_the_views_are_copies_the_bridge_alone_can_change():
    _, bridge = make_bridge(n_trials=1)
    bridge.ask("a")
    view = bridge.view("a")
    view.latest["score"] = 99.0
    with pytest.raises(AttributeError):
        view.best = 1.0
    bridge.report("a", {"score": 0.5, "step": 1})
    assert bridge.view("a").latest["score"] == 0.5 and view.best is None


def seeds(bridge, values: list[float], first_id: str, constraint_metric: dict | None = None) -> None:
    """One configuration's seeds (one Ray trial each), each reporting its value once, finally."""
    for i, value in enumerate(values):
        ray_id = f"{first_id}{i}"
        assert bridge.ask(ray_id).get("seed", 0) == i  # seed + 0, 1, 2
        extra = {k: v[i] for k, v in (constraint_metric or {}).items()}
        bridge.report(ray_id, {"score": value, "step": 1, "final_report": True, **extra})
        bridge.complete(ray_id, None, error=False)


def test_a_repeated_configuration_is_told_the_mean_of_its_seeds():
    study, bridge = make_bridge(n_trials=2, repeats=3)
    seeds(bridge, [0.2, 0.8, 0.8], "a")  # mean 0.6; the median would say 0.8
    seeds(bridge, [0.1, 0.4, 0.9], "b")  # mean 0.4667; the median 0.4, the last seed 0.9
    first, second = stored(study)
    assert first.value == pytest.approx(0.6) and second.value == pytest.approx(1.4 / 3)
    assert first.user_attrs["repeat_values"] == [0.2, 0.8, 0.8]
    assert first.user_attrs["value_std"] == pytest.approx(statistics.stdev([0.2, 0.8, 0.8]))


def constrained_bridge(repeats: int, constraint: str = "cost <= 120"):
    from search.space.constraints import Constraint

    study = optuna.create_study(direction="maximize", storage=STORAGE["url"], study_name=f"c-{next(NAMES)}")
    settings = BridgeSettings(
        {"x": FloatDistribution(0, 1)},
        ["score"],
        ["max"],
        4,
        repeats=repeats,
        constraints=[Constraint.parse(constraint)],
    )
    bridge = OptunaBridge(study, settings)
    return study, bridge


def test_constraints_are_judged_on_the_mean_of_the_seeds():
    study, bridge = constrained_bridge(repeats=3)
    seeds(bridge, [0.5, 0.5, 0.5], "a", {"cost": [50, 100, 180]})  # mean 110 holds; the last seed (180) breaks it
    seeds(bridge, [0.9, 0.9, 0.9], "b", {"cost": [200, 150, 50]})  # mean 133 breaks it; the last seed (50) holds
    holds, breaks = stored(study)
    assert holds.user_attrs["feasible"] is True and holds.constraints == {"cost <= 120": pytest.approx(-10.0)}
    assert breaks.user_attrs["feasible"] is False
    assert breaks.constraints == {"cost <= 120": pytest.approx(400 / 3 - 120)}
    assert (
        optuna.load_study(study_name=study.study_name, storage=STORAGE["url"] or study._storage).best_trial.number == 0
    )


@pytest.mark.parametrize(("constraint", "cost"), [("cost <= 120", 120.0), ("cost >= 0.5", 0.5), ("cost <= 0", 0.0)])
def test_a_trial_exactly_at_a_bound_is_feasible_here_and_for_optuna(constraint, cost):
    from search.space.constraints import all_hold

    study, bridge = constrained_bridge(repeats=1, constraint=constraint)
    seeds(bridge, [0.5], "a", {"cost": [cost]})
    seeds(bridge, [0.9], "b", {"cost": [cost + (1.0 if "<=" in constraint else -1.0)]})  # just outside
    at_bound, outside = stored(study)
    assert at_bound.user_attrs["feasible"] is True and all_hold(at_bound.constraints)
    assert outside.user_attrs["feasible"] is False
    assert bridge.view("a0").feasible is True
    reread = optuna.load_study(study_name=study.study_name, storage=STORAGE["url"] or study._storage)
    assert [t.number for t in reread.best_trials] == [0]  # Optuna agrees: feasible, and the best of those


def test_a_trial_is_never_pruned_at_its_final_report_but_would_be_before_it():
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    study, bridge = make_bridge(n_trials=6, pruner=pruner)
    for ray_id, value in (("a", 0.5), ("b", 0.7), ("c", 0.9)):  # median 0.7 at steps 1 and 2
        bridge.ask(ray_id)
        run(bridge, ray_id, [value, value])
    bridge.ask("last")
    bridge.report("last", {"score": 0.6, "step": 1, "final_report": False})
    bridge.report("last", {"score": 0.6, "step": 2, "final_report": True})
    assert not bridge.should_prune("last")  # its final report: it trained fully, nothing to save by stopping
    bridge.complete("last", None, error=False)
    bridge.ask("early")
    bridge.report("early", {"score": 0.6, "step": 1, "final_report": False})
    assert bridge.should_prune("early")  # the same value before the end: below the median, pruned
    bridge.complete("early", None, error=False)
    states = {t.number: t.state for t in stored(study)}
    assert states[3] == TrialState.COMPLETE and states[4] == TrialState.PRUNED


def test_a_running_trials_steps_reach_the_study_within_about_a_second():
    """What the dashboard shows lags a running trial by about a second (write_behind.FLUSH_S): not at once
    (one write per step is what write-behind saves), and not much later."""
    import time

    study, bridge = make_bridge(n_trials=1)
    bridge.ask("a")
    bridge.report("a", {"score": 0.5, "step": 1})
    bridge.flush_due()
    if STORAGE["url"] is not None:  # in memory the trial object is the store: nothing to wait for
        assert stored(study)[0].intermediate_values == {}
    time.sleep(1.2)
    bridge.report("a", {"score": 0.6, "step": 2})
    bridge.flush_due()  # the driver's loop calls this about ten times a second
    assert stored(study)[0].intermediate_values == {1: 0.5, 2: 0.6}


@pytest.mark.parametrize("value", ["0.5", True, None, [0.5]])
def test_a_metric_that_is_not_a_number_fails_the_trial_in_one_line(value):
    study, bridge = make_bridge(n_trials=1)
    bridge.ask("a")
    assert bridge.report("a", {"score": value, "step": 1}) is False  # the scheduler stops it
    bridge.complete("a", None, error=False)
    (trial,) = stored(study)
    assert trial.state == TrialState.FAIL
    if value is not None:
        reason = f"metric 'score' is not a number (got {value!r}, a {type(value).__name__})"
        assert trial.user_attrs["fail_reason"] == reason


def test_numpy_scalars_and_plain_tensors_are_numbers():
    import numpy as np
    import torch

    from trainables.session import plain

    study, bridge = make_bridge(n_trials=1)
    bridge.ask("a")
    assert bridge.report("a", plain({"score": np.float32(0.25), "step": 1}))
    assert bridge.report("a", plain({"score": torch.tensor(0.5), "step": 2, "final_report": True}))
    bridge.complete("a", None, error=False)
    (trial,) = stored(study)
    assert trial.state == TrialState.COMPLETE and trial.value == 0.5


@pytest.mark.parametrize("startup_s", [2.0, 10.0, 60.0])
def test_a_trial_that_never_reports_is_stopped_after_its_startup_allowance_and_budget(monkeypatch, startup_s):
    from types import SimpleNamespace

    from ray.tune.experiment import Trial

    from search.driver import trial_budget

    now = [1000.0]
    monkeypatch.setattr(trial_budget.time, "monotonic", lambda: now[0])
    watch = trial_budget.BudgetWatch(limit_s=3.0, startup_s=startup_s)
    silent = SimpleNamespace(trial_id="t", status=Trial.RUNNING)
    assert watch.overdue([silent]) == []  # first seen: its clock starts after the allowance
    now[0] += startup_s + 3.0 + watch.LATENESS_S - 0.1
    assert watch.overdue([silent]) == []
    now[0] += 0.2
    assert watch.overdue([silent]) == [silent]


@pytest.mark.parametrize(
    ("n_trials", "round_size", "concurrency", "fuse", "rounds"),
    [
        (10, 5, 2, 16, [[3, 2], [3, 2]]),  # a round split over the concurrency
        (12, 4, 3, 16, [[2, 1, 1], [2, 1, 1], [2, 1, 1]]),
        (9, 9, 2, 4, [[3, 3, 3]]),  # a round larger than concurrency x fuse: more groups, none above fuse
        (7, 3, 2, 16, [[2, 1], [2, 1], [1]]),  # the last round is what is left
        (6, None, 2, 4, [[4], [2]]),  # no rounds: a group of up to fuse whenever Ray asks
    ],
)
def test_fused_groups_in_rounds_are_asked_once_the_round_before_was_told(
    n_trials, round_size, concurrency, fuse, rounds
):
    from search.driver.fused_routing import NOT_YET

    study = optuna.create_study(direction="maximize", storage=STORAGE["url"], study_name=f"r-{next(NAMES)}")
    settings = BridgeSettings(
        {"x": FloatDistribution(0, 1)},
        ["score"],
        ["max"],
        n_trials,
        fuse=fuse,
        round_size=round_size,
        concurrency=concurrency,
    )
    bridge = OptunaBridge(study, settings)
    ids, seen, told = itertools.count(), [], 0
    while True:
        groups = []  # this round's: (Ray trial id, members)
        while isinstance(config := bridge.ask(gid := f"g{next(ids)}"), dict):
            groups.append((gid, len(config["members"])))
            if round_size is None:
                break  # without rounds Ray asks again whenever it has room: one group at a time here
        if config is None and not groups:
            break
        assert config in (NOT_YET, None) or round_size is None  # None: the last round was asked
        # what the sampler knew when it asked this round: every trial of the rounds before, told
        assert sum(t.state == TrialState.COMPLETE for t in stored(study)) == told
        seen.append([n for _, n in groups])
        more = len(stored(study)) < n_trials
        for gid, n in groups:
            if round_size is not None:  # the round is not over yet: the next waits (or there is none)
                assert bridge.ask("waiting") is (NOT_YET if more else None)
            result = {f"members/{i}/score": 0.1 * i for i in range(n)} | {"step": 1, "final_members": list(range(n))}
            bridge.report(gid, result)
            bridge.complete(gid, None, error=False)
        told += sum(n for _, n in groups)
    assert seen == rounds
    assert [t.state for t in stored(study)] == [TrialState.COMPLETE] * n_trials


class PruneAtStep(optuna.pruners.BasePruner):
    """Prunes every trial at one step: where a trial is pruned is the test's to choose."""

    def __init__(self, step: int) -> None:
        self.step = step

    def prune(self, study, trial) -> bool:
        return trial.last_step == self.step


@pytest.mark.parametrize(
    ("mode", "rule", "curve", "value", "step"),
    [
        ("max", "best", [0.5, 0.9, 0.3], 0.9, 2),
        ("max", "last", [0.5, 0.9, 0.3], 0.3, 3),
        ("min", "best", [0.5, 0.2, 0.7], 0.2, 2),
        ("min", "last", [0.5, 0.2, 0.7], 0.7, 3),
    ],
)
def test_a_pruned_trial_s_value_is_its_value_rule_s_not_its_last_step_s(mode, rule, curve, value, step):
    """Optuna gives a pruned trial its last step's value; the trial's value is the value rule's, as for a
    complete one, so the live line, the table, the study and MLflow show one number."""
    study = optuna.create_study(
        direction="maximize" if mode == "max" else "minimize",
        pruner=PruneAtStep(3),
        storage=STORAGE["url"],
        study_name=f"bridge-{next(NAMES)}",
    )
    bridge = OptunaBridge(study, BridgeSettings({"x": FloatDistribution(0, 1)}, ["score"], [mode], 1, value_rule=rule))
    bridge.ask("a")
    run(bridge, "a", curve + [0.4], final=False)
    (trial,) = stored(study)
    assert trial.state == TrialState.PRUNED and trial.user_attrs["pruned_at_step"] == 3
    assert trial.value == value and trial.user_attrs["value_step"] == step
    assert bridge.view("a").best == value and bridge.view("a").values == (value,)
    assert trial.intermediate_values == dict(enumerate(curve, start=1))  # the curve is kept as reported


@pytest.mark.parametrize("as_pruned", [True, False])
def test_a_trial_the_sweep_stopped_has_its_best_value_and_an_interrupted_one_none(as_pruned):
    study, bridge = make_bridge(n_trials=1)
    bridge.ask("a")
    for step, score in enumerate([0.5, 0.9, 0.3], start=1):
        bridge.report("a", {"score": score, "step": step})
    bridge.finish_open("sweep budget" if as_pruned else "interrupted", as_pruned=as_pruned)
    (trial,) = stored(study)
    if as_pruned:
        assert trial.state == TrialState.PRUNED and trial.value == 0.9 and trial.user_attrs["value_step"] == 2
    else:
        assert trial.state == TrialState.FAIL and trial.value is None


def test_a_pruned_repeated_configuration_s_value_is_the_mean_of_its_seeds_with_one():
    study = optuna.create_study(
        direction="maximize", pruner=PruneAtStep(2), storage=STORAGE["url"], study_name=f"bridge-{next(NAMES)}"
    )
    bridge = OptunaBridge(study, BridgeSettings({"x": FloatDistribution(0, 1)}, ["score"], ["max"], 1, repeats=3))
    bridge.ask("a"), bridge.ask("b"), bridge.ask("c")
    run(bridge, "a", [0.2, 0.1, 0.1], final=False)  # seed 0, pruned at step 2 with a best of 0.2
    run(bridge, "b", [0.8, 0.6])  # seed 1 ends on its own: 0.8
    bridge.finish_open("sweep budget", as_pruned=True)  # seed 2 never reported
    (trial,) = stored(study)
    assert trial.state == TrialState.PRUNED and trial.value == pytest.approx(0.5)
    assert trial.user_attrs["repeat_values"] == [0.2, 0.8, None]


def test_the_trial_budget_stops_a_trial_only_past_its_own_last_report_s_interval():
    """A trainable watching time_left() makes its last report within one report interval past the budget;
    stopped at its first report past the budget, it lost that last report (its summary)."""
    from search.driver.trial_budget import TrialBudgetStopper

    stop = TrialBudgetStopper(budget_s=10.0, grace_s=2.0)
    assert [stop("t", {"elapsed_s": s}) for s in (9.9, 10.0, 10.5, 11.99, 12.0, 15.0)] == [False] * 4 + [True] * 2


def test_a_trial_s_budget_clock_starts_when_it_runs_not_while_it_waits_and_from_its_own_start(monkeypatch):
    from types import SimpleNamespace

    from ray.tune.experiment import Trial

    from search.driver import trial_budget

    now = [1000.0]
    monkeypatch.setattr(trial_budget.time, "monotonic", lambda: now[0])
    watch = trial_budget.BudgetWatch(limit_s=3.0, startup_s=2.0)
    waiting = SimpleNamespace(trial_id="w", status=Trial.PENDING)
    assert watch.overdue([waiting]) == []
    now[0] += 100.0  # it waited for a free slot far longer than its budget
    waiting.status = Trial.RUNNING
    assert watch.overdue([waiting]) == []  # first seen running now: its clock starts after the allowance
    now[0] += 2.0 + 3.0 + watch.LATENESS_S - 0.1
    assert watch.overdue([waiting]) == []

    hung = SimpleNamespace(trial_id="h", status=Trial.RUNNING)
    watch.overdue([hung])
    watch.saw_result("h", {"elapsed_s": 2.5})  # its first report came 2.5 s into its own clock, then it hung
    now[0] += 3.0 - 2.5 + watch.LATENESS_S - 0.1
    assert watch.overdue([hung]) == []
    now[0] += 0.2
    assert watch.overdue([hung]) == [hung]  # 3 s (+ lateness) of its own clock, not from its first report


@pytest.mark.parametrize(
    "changed, error",
    [
        ({"metrics": "score"}, "metrics and modes are lists"),
        ({"modes": ["max", "min"]}, "1 metrics and 2 modes"),
        ({"metrics": ["a", "b", "c"], "modes": ["max"]}, "3 metrics and 1 modes"),
        ({"value_rule": "mean"}, "value_rule is best or last"),
    ],
)
def test_bridge_settings_refuse_what_no_sweep_could_mean(changed, error):
    given = {"distributions": {"x": FloatDistribution(0, 1)}, "metrics": ["score"], "modes": ["max"], "n_trials": 1}
    with pytest.raises((TypeError, ValueError), match=error):
        BridgeSettings(**(given | changed))

"""How a configuration ended, judged from its seeds (``search/driver/verdict.py``): no study, no Ray."""

import pytest
from optuna.trial import TrialState

from search.driver.trial_records import TrialRecord
from search.driver.verdict import FailFast, constraint_amounts, final_state, mean_values, std_values
from search.space.constraints import Constraint

parse = Constraint.parse

C, P, F = TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL


def seeds(*states, values=None, failures=None, latest=None, raised=False) -> list[TrialRecord]:
    out = []
    for i, state in enumerate(states):
        rec = TrialRecord(optuna_trial=None, key=f"r{i}", repeat=i, state=state, raised=raised)
        rec.values = None if values is None else values[i]
        rec.failure = None if failures is None else failures[i]
        rec.latest = {} if latest is None else latest[i]
        out.append(rec)
    for rec in out:
        rec.seeds = out
    return out


@pytest.mark.parametrize(
    ("states", "missing", "expected"),
    [
        ((C, C, C), None, C),
        ((C, P, C), None, P),
        ((C, P, F), None, F),  # a failed seed fails the configuration, even beside a pruned one
        ((F, C, C), None, F),
        ((C, C), F, F),  # the third seed never ran: interrupted
        ((C, C), P, P),  # ... or stopped at the sweep's budget
        ((C, C, C), F, C),  # every seed ran: ``missing`` says nothing
    ],
)
def test_the_worst_seed_decides_fail_then_pruned_then_complete(states, missing, expected):
    assert final_state(seeds(*states), 3, missing, "")[0] == expected


def test_a_failed_seeds_own_reason_comes_before_the_callers():
    recs = seeds(C, F, F, failures=[None, "ValueError: bad lr", "ValueError: other"])
    assert final_state(recs, 3, None, "stopped: interrupted") == (F, "ValueError: bad lr")
    assert final_state(seeds(C, P, C), 3, None, "budget") == (P, "budget")


def test_the_value_is_the_mean_over_seeds_not_the_median_and_the_std_is_the_samples():
    recs = seeds(C, C, C, values=[(1.0, 10.0), (2.0, 20.0), (6.0, 90.0)])
    assert mean_values(recs) == pytest.approx([3.0, 40.0])  # a median would say [2, 20]
    assert std_values(recs) == pytest.approx([2.6457513, 43.588989])  # n-1 in the denominator


def test_constraints_are_judged_on_each_metrics_mean_over_the_seeds():
    latest = [{"latency_ms": 90.0, "acc": 0.9}, {"latency_ms": 130.0, "acc": 0.8}, {"latency_ms": 140.0}]
    amounts, unknown = constraint_amounts([parse("latency_ms <= 120")], seeds(C, C, C, latest=latest))
    assert unknown is None
    assert amounts == {"latency_ms <= 120": pytest.approx(0.0)}  # mean 120: exactly at the bound holds
    latest[0]["latency_ms"] = 93.0
    amounts, _ = constraint_amounts([parse("latency_ms <= 120")], seeds(C, C, C, latest=latest))
    assert amounts == {"latency_ms <= 120": pytest.approx(1.0)}


def test_a_constraint_on_a_metric_one_seed_never_reported_cannot_be_judged():
    latest = [{"latency_ms": 90.0, "acc": 0.9}, {"acc": 0.8}, {"acc": 0.7}]
    amounts, unknown = constraint_amounts([parse("latency_ms <= 120")], seeds(C, C, C, latest=latest))
    assert amounts == {}
    assert unknown == "constraint 'latency_ms <= 120': metric 'latency_ms' was not reported (reported: acc)"


def test_fail_fast_stops_once_the_first_trials_all_raised_alike_and_not_once_one_finished():
    watch = FailFast(first=3)
    for x in (0.41, 0.07, 3e-05):
        assert watch.failing is None
        watch.saw(F, seeds(F, failures=[f"ValueError: x={x} is out of range"], raised=True))
    assert watch.failing == "ValueError: x=0.41 is out of range"

    after_a_pruned = FailFast(first=2)
    after_a_pruned.saw(P, seeds(P))
    for _ in range(3):
        after_a_pruned.saw(F, seeds(F, failures=["ValueError: same"], raised=True))
    assert after_a_pruned.failing is None

    unlike = FailFast(first=3)
    for line in ("ValueError: a", "ValueError: a", "KeyError: 'b'", "ValueError: a"):
        unlike.saw(F, seeds(F, failures=[line], raised=True))
    assert unlike.failing is None  # judged on the first three only

    late = FailFast(first=3)
    for line in ("KeyError: 'b'", "ValueError: a", "ValueError: a", "ValueError: a"):
        late.saw(F, seeds(F, failures=[line], raised=True))
    assert late.failing is None  # the last three agree, the first three do not: a broken set-up fails at once

"""search/space/pareto.py alone: dominance, non-dominated sorting, and the front pruner's decisions."""

import itertools
import random

import pytest

from search.space.pareto import ParetoPruner, dominates, front_of, fronts, signed


def test_signed_turns_maximised_objectives_round():
    assert signed([0.9, 2000], ["max", "min"]) == (-0.9, 2000.0)


def test_dominates_needs_no_worse_everywhere_and_better_somewhere():
    assert dominates((1, 1), (2, 1)) and dominates((1, 1), (2, 2))
    assert not dominates((1, 1), (1, 1))  # equal: neither
    assert not dominates((1, 3), (2, 2)) and not dominates((2, 2), (1, 3))  # a trade-off: neither


def brute_force_fronts(vectors):
    """Peel the non-dominated set off again and again: the definition, at O(n^3)."""
    left, out = list(range(len(vectors))), []
    while left:
        front = [i for i in left if not any(dominates(vectors[j], vectors[i]) for j in left)]
        out.append(front)
        left = [i for i in left if i not in front]
    return out


@pytest.mark.parametrize("seed", range(20))
def test_fronts_match_the_definition(seed):
    rng = random.Random(seed)
    dims = rng.choice([1, 2, 3])
    # a coarse grid, so ties and equal vectors occur
    vectors = [tuple(rng.randint(0, 5) for _ in range(dims)) for _ in range(rng.randint(1, 30))]
    assert [sorted(f) for f in fronts(vectors)] == brute_force_fronts(vectors)


def test_front_of_keys():
    assert front_of({3: (1, 5), 7: (2, 2), 9: (3, 3), 11: (5, 1)}) == [3, 7, 11]
    assert front_of({}) == []


def pruner_with(step_vectors, **options):
    """A pruner that has seen trials 0.. report these vectors at step 5, and enough completed trials."""
    pruner = ParetoPruner(n_startup_trials=0, **options)
    for number, vector in enumerate(step_vectors):
        pruner.record(number, 5, vector)
    return pruner


def test_never_prunes_a_trial_no_other_dominates_at_that_step():
    rng = random.Random(0)
    for _ in range(200):
        vectors = [(rng.random(), rng.random()) for _ in range(rng.randint(2, 12))]
        for keep in (0.1, 0.5, 1.0):
            pruner = pruner_with(vectors, keep=keep)
            first = fronts(vectors)[0]
            assert not any(pruner.should_prune(i, 5) for i in first)


def test_prunes_the_dominated_worst_fraction_and_keeps_the_rest():
    # (error, size): 0 and 1 are the front; 2 is dominated by 1; 3 by everything before it
    vectors = [(0.1, 9.0), (0.2, 1.0), (0.3, 2.0), (0.9, 9.0)]
    half = pruner_with(vectors, keep=0.5)  # ceil(0.5 * 4) = 2 trials kept ahead of any pruned one
    assert [half.should_prune(i, 5) for i in range(4)] == [False, False, True, True]
    all_kept = pruner_with(vectors, keep=1.0)
    assert not any(all_kept.should_prune(i, 5) for i in range(4))


def test_startup_warmup_interval_and_minimum_trials_hold_pruning_back():
    dominated = [(0.1, 1.0), (0.9, 9.0)]
    assert not pruner_with(dominated, n_min_trials=2).should_prune(1, 5)  # one other trial at step 5
    assert not pruner_with(dominated, n_warmup_steps=6).should_prune(1, 5)
    assert not pruner_with(dominated, n_warmup_steps=2, interval_steps=2).should_prune(1, 5)  # judged at 2, 4, 6
    assert pruner_with(dominated, n_warmup_steps=1, interval_steps=2).should_prune(1, 5)  # 1, 3, 5: judged
    waiting = ParetoPruner(n_startup_trials=1)
    for number, vector in enumerate(dominated):
        waiting.record(number, 5, vector)
    assert not waiting.should_prune(1, 5)  # no trial completed yet
    waiting.completed(0)
    assert waiting.should_prune(1, 5)
    assert not waiting.should_prune(1, 6)  # nothing reported at step 6


def test_only_the_same_step_counts_and_a_continued_study_is_read_back():
    pruner = ParetoPruner(n_startup_trials=1)
    pruner.seed([(0, True, {1: (0.5, 1.0), 2: (0.1, 1.0)})])  # a finished trial of an earlier run
    pruner.record(1, 1, (0.3, 1.0))  # better than trial 0 was at step 1
    pruner.record(1, 2, (0.3, 1.0))  # worse than trial 0 was at step 2
    assert not pruner.should_prune(1, 1) and pruner.should_prune(1, 2)


def test_non_finite_vectors_are_not_recorded():
    pruner = ParetoPruner(n_startup_trials=0)
    pruner.record(0, 1, (float("nan"), 1.0))
    pruner.record(1, 1, (0.5, 1.0))
    assert not pruner.should_prune(1, 1)  # alone at its step


@pytest.mark.parametrize(
    "options, message",
    [
        ({"keep": 0}, "keep must be a fraction in (0, 1]"),
        ({"keep": 1.5}, "keep must be a fraction in (0, 1]"),
        ({"n_min_trials": 0}, "n_min_trials must be an integer of at least 1"),
        ({"n_warmup_steps": -1}, "n_warmup_steps must be an integer of at least 0"),
        ({"interval_steps": 1.5}, "interval_steps must be an integer of at least 1"),
    ],
)
def test_bad_options_are_refused(options, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        ParetoPruner(**options)


def test_fronts_of_many_vectors_stay_consistent():
    vectors = list(itertools.product(range(4), repeat=2))
    layered = fronts(vectors)
    assert layered[0] == [0]  # (0, 0) dominates every other
    assert sum(len(f) for f in layered) == len(vectors)


def test_a_nan_vector_never_sits_on_a_front():
    """A NaN compares false both ways, so it would sit on the first front and push the trials behind it out
    of ``keep``: a diverged trial must not get the second-best one pruned."""
    pruner = ParetoPruner(n_startup_trials=0, keep=0.5)
    nan = float("nan")
    for number, vector in ((0, (0.9, 0.9)), (1, (0.8, 0.8)), (2, (0.7, 0.7)), (3, (nan, nan))):
        pruner.record(number, 1, signed(vector, ["max", "max"]))
    # of three finite trials, keep 0.5 is two: the best alone is ahead of the second, which stays
    assert not pruner.should_prune(1, 1)
    assert pruner.should_prune(2, 1)  # two ahead of the third: it goes

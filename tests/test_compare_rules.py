"""``hpsearch compare``'s rules on rows alone, without a store (search/readback/compare.py): how sweeps rank
together, and what a group of ``--by`` holds. The command on real sweeps is test_compare.py."""

from search.readback.compare import Row, group_by, ranked


def row(sweep: str, trial: int, value: float | None, state: str = "COMPLETE", names=("score",), **params) -> Row:
    return Row(sweep, trial, state, value, None, [], params, values=[value], names=list(names))


def test_sweeps_on_one_metric_rank_together_each_by_its_own_direction():
    rows = [row("up", 0, 0.5), row("down", 0, 0.2), row("up", 1, 0.9), row("down", 1, 0.7), row("up", 2, None)]
    signs, order = {"up": -1, "down": 1}, {"up": 0, "down": 1}
    shown = [(r.sweep, r.trial) for r in ranked(rows, signs, order)]
    # one ranking (not sweep by sweep); "down" minimizes, so its 0.2 ranks as a smaller value, not a worse one
    assert shown == [("up", 1), ("up", 0), ("down", 0), ("down", 1), ("up", 2)]


def test_sweeps_on_different_metrics_are_listed_each_apart_in_the_order_named():
    rows = [row("a", 0, 0.5), row("b", 0, 0.9, names=("loss",)), row("a", 1, 0.8), row("b", 1, 0.1, names=("loss",))]
    shown = [(r.sweep, r.trial) for r in ranked(rows, {"a": -1, "b": 1}, {"b": 0, "a": 1})]
    assert shown == [("b", 1), ("b", 0), ("a", 1), ("a", 0)]


def test_a_groups_best_and_mean_are_over_its_complete_trials_best_first():
    """Its best was its worst complete trial; pruned trials' values (a pruned trial has one) entered both."""
    rows = [
        row("s", 0, 0.95, "PRUNED", model="cnn"),
        row("s", 1, 0.9, model="cnn"),
        row("s", 2, 0.8, model="mlp"),
        row("s", 3, 0.6, model="cnn"),
        row("s", 4, 0.3, model="cnn"),
        row("s", 5, None, "FAIL", model="mlp"),
    ]
    ordered, summary = group_by(ranked(rows, {"s": -1}, {"s": 0}), "model")
    assert [r.trial for r in ordered] == [0, 1, 3, 4, 2, 5]
    # trials, then complete: the mean is over the complete ones, and says how many those are
    assert summary == [("cnn", 4, 3, 0.9, (0.9 + 0.6 + 0.3) / 3), ("mlp", 2, 1, 0.8, 0.8)]

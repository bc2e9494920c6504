"""Repeated seeds compared honestly: search/readback/seed_stats.py, and the columns compare builds from it."""

import math
import statistics

import pytest

from search.readback.compare import Row, columns
from search.readback.seed_stats import distinct, half_width, welch_p


def test_half_width_is_students_t_on_the_seeds():
    seeds = [0.1, 0.2, 0.9]  # mean 0.4, median 0.2: a median in place of the mean would show
    t_975_2 = 4.302652729911275  # t(0.975, 2 degrees of freedom)
    assert half_width(seeds) == pytest.approx(t_975_2 * statistics.stdev(seeds) / math.sqrt(3))
    five = [0.861, 0.866, 0.869, 0.872, 0.876]
    assert half_width(five) == pytest.approx(2.7764451051977987 * statistics.stdev(five) / math.sqrt(5))
    assert half_width([0.5]) is None and half_width([]) is None


def test_welch_tells_apart_only_what_the_seeds_can():
    a = [0.861, 0.866, 0.869, 0.872, 0.876]
    close = [0.858, 0.862, 0.864, 0.868, 0.871]  # 0.004 lower: within the seeds' spread
    far = [0.820, 0.826, 0.829, 0.831, 0.836]
    # Welch's t by hand: (ma - mb) / sqrt(va/na + vb/nb), with the Welch-Satterthwaite degrees of freedom
    ma, mb, va, vb = statistics.fmean(a), statistics.fmean(far), statistics.variance(a), statistics.variance(far)
    t = (ma - mb) / math.sqrt(va / 5 + vb / 5)
    from scipy import stats

    dof = (va / 5 + vb / 5) ** 2 / ((va / 5) ** 2 / 4 + (vb / 5) ** 2 / 4)
    assert welch_p(a, far) == pytest.approx(2 * stats.t.sf(abs(t), dof))
    assert distinct(welch_p(a, far)) == "yes"
    assert distinct(welch_p(a, close)) == "no"
    assert welch_p(a, [0.9]) is None and distinct(None) == "-"
    assert welch_p([0.5, 0.5], [0.5, 0.5]) == 1.0 and welch_p([0.5, 0.5], [0.4, 0.4]) == 0.0


def test_a_best_whose_seeds_all_agree_does_not_make_every_other_configuration_distinct():
    """One side without spread is still Welch's test on the other side's spread, not a comparison of means."""
    best = [0.9, 0.9, 0.9]
    spread = [0.8, 0.9, 0.95]  # mean 0.883, well within its own spread of the best's 0.9
    assert distinct(welch_p(best, spread)) == "no" and distinct(welch_p(spread, best)) == "no"
    assert distinct(welch_p(best, [0.70, 0.71, 0.72])) == "yes"


def test_compare_marks_the_best_and_what_is_distinct_from_it():
    def row(trial, seeds):
        mean = statistics.fmean(seeds)
        return Row("s", trial, "COMPLETE", mean, statistics.stdev(seeds), seeds, {"x": trial}, values=[mean])

    rows = [  # best first, as collect sorts them
        row(0, [0.861, 0.866, 0.869, 0.872, 0.876]),
        row(1, [0.858, 0.862, 0.864, 0.868, 0.871]),
        row(2, [0.820, 0.826, 0.829, 0.831, 0.836]),
    ]
    header, body = columns(rows, ["acc"], raw=True)
    cells = [dict(zip(header, b)) for b in body]
    assert [c["distinct"] for c in cells] == ["best", "no", "yes"]
    assert cells[0]["p vs best"] == ""
    assert float(cells[1]["p vs best"]) > 0.05 > float(cells[2]["p vs best"])
    assert float(cells[2]["± 95% CI"]) == pytest.approx(half_width(rows[2].seeds))


def test_sweeps_with_different_metrics_keep_their_own_columns():
    a = Row("a", 0, "COMPLETE", 0.9, None, [], {}, values=[0.9], names=["valid_accuracy"])
    b = Row("b", 0, "COMPLETE", 0.7, None, [], {}, values=[0.7], names=["val_accuracy"])
    header, body = columns([a, b], ["valid_accuracy", "val_accuracy"], raw=True)
    cells = [dict(zip(header, row)) for row in body]
    assert cells[0]["valid_accuracy"] == "0.9" and cells[0]["val_accuracy"] == ""
    assert cells[1]["val_accuracy"] == "0.7" and cells[1]["valid_accuracy"] == ""

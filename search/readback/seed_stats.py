"""Repeated seeds, compared honestly: a configuration's mean with its 95% confidence interval, and whether it
can be told apart from the best configuration at all.

With ``repeats: N`` each configuration's value is the mean of N seeds. Two means 0.005 apart may be one
configuration twice, as far as five seeds can tell: the interval is Student's t on the seeds
(``mean ± t(0.975, n-1) · s/√n``), and "distinct from the best" is Welch's t-test (unequal variances, as
seeds of different configurations have) at p < 0.05. ``compare``, the final table and ``report``
(error bars) use these.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

LEVEL = 0.95
ALPHA = 0.05


def half_width(values: Sequence[float], level: float = LEVEL) -> float | None:
    """Half the width of the mean's confidence interval (None for fewer than two seeds)."""
    from scipy import stats

    n = len(values)
    if n < 2:
        return None
    return float(stats.t.ppf(0.5 + level / 2, n - 1)) * statistics.stdev(values) / math.sqrt(n)


def welch_p(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided p-value of Welch's t-test that the two sets of seeds share a mean (None: too few seeds).
    Seeds without spread on both sides are told apart by their means alone (p 0 if they differ, else 1)."""
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        return None
    if statistics.pvariance(a) == 0 and statistics.pvariance(b) == 0:
        return 0.0 if statistics.fmean(a) != statistics.fmean(b) else 1.0
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def distinct(p: float | None) -> str:
    """yes / no (at ALPHA), or - when there were too few seeds to tell."""
    return "-" if p is None else ("yes" if p < ALPHA else "no")

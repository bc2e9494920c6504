"""The report's own plots (``readback/report.py``): intermediate values coloured by a searched parameter
instead of a legend per trial, and slanted tick labels on slice plots."""

import matplotlib

matplotlib.use("agg")

import optuna  # noqa: E402
from optuna.distributions import CategoricalDistribution, FloatDistribution  # noqa: E402

from search.readback.report import curves_by_param, tidy_ticks  # noqa: E402


def study_with_curves(n: int) -> optuna.Study:
    study = optuna.create_study(direction="maximize", study_name="curves")
    for i in range(n):
        lr = 10 ** (-4 + 3 * i / max(n - 1, 1))
        params = {"lr": lr, "opt": "adam" if i % 2 else "sgd"}
        dists = {"lr": FloatDistribution(1e-4, 0.1, log=True), "opt": CategoricalDistribution(["adam", "sgd"])}
        if i % 3 == 0:
            params["momentum"], dists["momentum"] = 0.9, FloatDistribution(0.5, 0.99)  # a branch's own
        curve = {s: lr * s for s in range(1, 6)}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=curve[5],
                                                  intermediate_values=curve))  # fmt: skip
    return study


def test_thirty_trials_are_thirty_lines_coloured_by_lr_on_a_log_scale_without_a_legend():
    ax = curves_by_param(study_with_curves(30), top=["momentum", "opt", "lr"])
    assert len(ax.get_lines()) == 30 and ax.get_legend() is None
    colorbar = ax.figure.axes[-1]
    assert colorbar.get_ylabel() == "lr"  # momentum ranks higher, but only some trials set it; opt is no number
    assert colorbar.get_yscale() == "log"  # the space searched lr on a log scale
    first, last = ax.get_lines()[0].get_color(), ax.get_lines()[-1].get_color()
    assert first != last  # lr 1e-4 and 1e-1 at the two ends of the colour map


def test_slice_tick_labels_are_slanted():
    ax = optuna.visualization.matplotlib.plot_slice(study_with_curves(4), params=["lr"])
    tidy_ticks(ax)
    panel = ax.flat[0] if hasattr(ax, "flat") else ax
    assert all(label.get_rotation() == 40 for label in panel.get_xticklabels())

"""A conditional sweep's report per branch (``readback/branches.py``, ``report.per_branch``): a branch's own
parameters are judged on that branch's trials alone, beside the study-wide importances."""

import numpy
import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from search.readback.branches import branches
from search.readback.report import per_branch

SPACE = {  # as the study records it: flat, each parameter with its `when`
    "model": {"type": "categorical", "choices": ["vgg", "resnet", "alexnet"], "when": None},
    "kernel_size": {"type": "int", "low": 3, "high": 7, "when": {"model": ["vgg"]}},
    "depth": {"type": "int", "low": 18, "high": 101, "when": {"model": ["resnet"]}},
    "lr": {"type": "float", "low": 0.001, "high": 0.1, "when": None},
    "momentum": {"type": "float", "low": 0.5, "high": 0.9, "when": {"optimizer": ["sgd"]}},
}


def test_each_branch_ranks_its_own_parameters_on_its_own_trials(tmp_path):
    study = optuna.create_study(direction="maximize")
    study.set_user_attr("space", {"space": SPACE})
    rng = numpy.random.default_rng(0)
    for i in range(36):
        model = ["vgg", "resnet", "alexnet"][i % 3]
        params = {"model": model, "lr": float(rng.uniform(0.001, 0.1))}
        dists = {"model": CategoricalDistribution(["vgg", "resnet", "alexnet"]), "lr": FloatDistribution(0.001, 0.1)}
        if model == "vgg":
            params["kernel_size"] = int(rng.integers(3, 8))
            dists["kernel_size"] = IntDistribution(3, 7)
        if model == "resnet":
            params["depth"] = int(rng.integers(18, 102))
            dists["depth"] = IntDistribution(18, 101)
        # vgg: the kernel decides; resnet: the depth decides; lr barely matters anywhere
        value = {"vgg": 0.5 + 0.05 * params.get("kernel_size", 0), "resnet": params.get("depth", 0) / 100,
                 "alexnet": 0.3}[model] + 0.001 * params["lr"]  # fmt: skip
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=value))

    assert [(b.label, b.params) for b in branches(study)] == [
        ("model=vgg", ["kernel_size"]), ("model=resnet", ["depth"]), ("optimizer=sgd", ["momentum"]),
    ]  # fmt: skip
    by_branch, files = per_branch(study, tmp_path)
    assert set(by_branch) == {"model=vgg", "model=resnet"}  # no trial chose sgd: no branch to judge
    assert max(by_branch["model=vgg"], key=by_branch["model=vgg"].get) == "kernel_size"
    assert max(by_branch["model=resnet"], key=by_branch["model=resnet"].get) == "depth"
    assert "model" not in by_branch["model=vgg"]  # one value in its own branch: nothing to rank
    assert {p.name for p in files} == {"slice_model-vgg.png", "slice_model-vgg.html", "slice_model-resnet.png",
                                       "slice_model-resnet.html"}  # fmt: skip


def test_a_parameter_two_branches_share_is_ranked_in_each():
    """``width`` under ``when: {model: [vgg, resnet]}`` belongs to both branches, not to the first only."""
    study = optuna.create_study(direction="maximize")
    shared = {**SPACE, "width": {"type": "float", "low": 0.25, "high": 1.0, "when": {"model": ["vgg", "resnet"]}}}
    study.set_user_attr("space", {"space": shared})
    found = {b.label: b.params for b in branches(study)}
    assert found["model=vgg"] == ["kernel_size", "width"] and found["model=resnet"] == ["depth", "width"]

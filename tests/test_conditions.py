"""Conditional search spaces (``search/space/conditions.py``): the two forms read as one, the tree a grid
enumerates, OFAT's baseline per branch, and every sampler on such a space: a trial holds exactly the
parameters its own choices make active. No Ray here; the end-to-end sweep is in test_conditional_sweep.py."""

import statistics
import warnings

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution

from search.space import conditions, samplers
from search.space.loading import validate
from search.space.spec import SAMPLERS

WHEN_FORM = {
    "optimizer": {"type": "categorical", "choices": ["adam", "sgd", "rmsprop"]},
    "momentum": {"type": "float", "low": 0.5, "high": 0.99, "when": {"optimizer": ["sgd", "rmsprop"]}},
    "nesterov": {"type": "categorical", "choices": [True, False], "when": {"optimizer": "sgd"}},
}
BRANCH_FORM = {
    "model": {
        "type": "categorical",
        "choices": {
            "alexnet": {},
            "vgg": {"kernel_size": {"type": "categorical", "choices": [3, 5, 7]}},
            "inception": {"reduce_1x1": {"type": "categorical", "choices": [True, False]}},
            "resnet": {"depth": {"type": "categorical", "choices": [18, 50, 101]}},
        },
    },
    "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
}


def spec_of(space, sampler="tpe", **more):
    raw = {"name": "c", "trainable": "tests/plugins/branchy.py:train", "metric": "score", "mode": "max"}
    return validate({**raw, "space": space, "sampler": {"name": sampler, "seed": 0}, **more}, "test")


def expected_active(params: dict) -> set:
    """The rule, written out by hand for the two spaces above."""
    names = set(params) & {"optimizer", "model", "lr"}
    if params.get("optimizer") in ("sgd", "rmsprop"):
        names.add("momentum")
    if params.get("optimizer") == "sgd":
        names.add("nesterov")
    names |= {"vgg": {"kernel_size"}, "inception": {"reduce_1x1"}, "resnet": {"depth"}}.get(params.get("model"), set())
    return names


def test_both_forms_become_one_flat_space_with_conditions():
    space = spec_of({**WHEN_FORM, **BRANCH_FORM}).space
    assert list(space) == ["optimizer", "momentum", "nesterov", "model", "kernel_size", "reduce_1x1", "depth", "lr"]
    assert space["momentum"].when == {"optimizer": ["sgd", "rmsprop"]}
    assert space["nesterov"].when == {"optimizer": ["sgd"]}  # a single value is a list of one
    assert space["model"].choices == ["alexnet", "vgg", "inception", "resnet"]
    assert space["depth"].when == {"model": ["resnet"]} and space["lr"].when is None
    # what the study records (and resume validates again) is this flat form: it reads back the same
    again = spec_of({k: p.model_dump() for k, p in space.items()}).space
    assert again == space


def test_a_name_in_two_branches_of_one_parameter_is_one_parameter_when_defined_alike():
    depth = {"type": "int", "low": 2, "high": 8}
    space = spec_of(
        {"model": {"type": "categorical", "choices": {"vgg": {"depth": depth}, "a": {}, "resnet": {"depth": depth}}}}
    ).space
    assert space["depth"].when == {"model": ["vgg", "resnet"]}
    assert conditions.active(space, {"model": "a"}) == ["model"]


def test_nested_branches_depend_on_their_whole_path():
    expansion = {"type": "int", "low": 2, "high": 4}
    block = {"type": "categorical", "choices": {"basic": {}, "bottleneck": {"expansion": expansion}}}
    space = spec_of({"model": {"type": "categorical", "choices": {"a": {}, "resnet": {"block": block}}}}).space
    assert conditions.order(space) == ["model", "block", "expansion"]
    assert conditions.requires(space, "expansion") == {"model": "resnet", "block": "bottleneck"}
    assert conditions.active(space, {"model": "a", "block": "bottleneck"}) == ["model"]  # its parent is off


def test_a_grid_counts_each_branch_once():
    space = {
        "optimizer": {"type": "categorical", "choices": ["adam", "sgd"]},
        "momentum": {"type": "float", "low": 0.5, "high": 0.9, "step": 0.2, "when": {"optimizer": "sgd"}},
        **{k: v for k, v in BRANCH_FORM.items() if k == "model"},
    }
    spec = spec_of(space, sampler="grid")
    points = samplers.grid_points(spec, "test")
    # (adam + sgd x 3 momenta) x (alexnet + vgg x 3 + inception x 2 + resnet x 3) = 4 x 9
    assert len(points) == 36 == samplers.trial_count(spec, "test")
    assert conditions.count(spec.space, {k: p.size() for k, p in spec.space.items()}) == 36  # the MAX_GRID check's
    assert len({tuple(sorted(p.items(), key=str)) for p in points}) == 36
    assert all(set(p) == expected_active(p) - {"nesterov"} for p in points)
    unconditional = {k: {kk: vv for kk, vv in v.items() if kk != "when"} for k, v in space.items() if k != "model"}
    flat = spec_of(unconditional, sampler="grid")
    assert samplers.trial_count(flat, "test") == 2 * 3  # the same without when: the product


def test_ofat_varies_each_branchs_parameters_around_that_branchs_baseline():
    space = {"model": BRANCH_FORM["model"], "lr": {"type": "categorical", "choices": [0.01, 0.1]}}
    spec = spec_of(space, sampler="ofat")
    points = samplers.ofat_points(spec, "test")
    assert points[0] == {"model": "alexnet", "lr": 0.01}
    # each model once at baseline, then its own knob varied around it; lr varied once, at the root baseline
    assert points[1:] == [
        {"model": "vgg", "kernel_size": 3, "lr": 0.01},
        {"model": "vgg", "kernel_size": 5, "lr": 0.01},
        {"model": "vgg", "kernel_size": 7, "lr": 0.01},
        {"model": "inception", "reduce_1x1": True, "lr": 0.01},
        {"model": "inception", "reduce_1x1": False, "lr": 0.01},
        {"model": "resnet", "depth": 18, "lr": 0.01},
        {"model": "resnet", "depth": 50, "lr": 0.01},
        {"model": "resnet", "depth": 101, "lr": 0.01},
        {"model": "alexnet", "lr": 0.1},
    ]


ON_CONDITIONAL = [s for s in SAMPLERS if s not in ("cmaes", "grid", "ofat")]


@pytest.mark.parametrize("sampler", ON_CONDITIONAL)
def test_every_sampler_sets_exactly_the_active_parameters(sampler):
    spec = spec_of({**WHEN_FORM, **BRANCH_FORM}, sampler=sampler)
    distributions = samplers.distributions(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.create_study(sampler=samplers.build_sampler(spec, "test"), direction="maximize")
        seen = set()
        for i in range(24):
            trial = conditions.ask(study, distributions, spec.space)
            assert set(trial.params) == expected_active(trial.params), trial.params
            seen.add((trial.params["optimizer"], trial.params["model"]))
            study.tell(trial, i % 5)
    assert len(seen) >= 4  # it explores the branches, not one of them
    assert len({t.params["optimizer"] for t in study.trials}) >= 2


def test_cmaes_refuses_a_conditional_space_in_one_line():
    with pytest.raises(Exception, match="the cmaes sampler needs every parameter in every trial"):
        samplers.build_sampler(spec_of(WHEN_FORM, sampler="cmaes"), "test")


def branch_score(params: dict) -> float:
    """One branch clearly better (resnet, and more so deep), the rest flat and noisy in lr."""
    base = {"alexnet": 0.3, "vgg": 0.4, "inception": 0.45, "resnet": 0.7}[params["model"]]
    return base + 0.02 * params.get("depth", 0) / 101 + 0.01 * params.get("kernel_size", 0) / 7


def trials_to_best_branch(sampler: str, seed: int, budget: int = 40) -> int:
    """How many trials until 3 of the last 5 trials chose resnet with depth 101: the search has settled."""
    spec = spec_of(BRANCH_FORM, sampler=sampler)
    spec = spec.model_copy(update={"sampler": spec.sampler.model_copy(update={"seed": seed})})
    distributions = samplers.distributions(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.create_study(sampler=samplers.build_sampler(spec, "test"), direction="maximize")
        hits = []
        for n in range(1, budget + 1):
            trial = conditions.ask(study, distributions, spec.space)
            study.tell(trial, branch_score(trial.params))
            hits.append(trial.params["model"] == "resnet" and trial.params.get("depth") == 101)
            if sum(hits[-5:]) >= 3:
                return n
    return budget + 1


def test_tpe_settles_on_the_best_branch_in_fewer_trials_than_random_search():
    seeds = range(5)
    tpe = [trials_to_best_branch("tpe", s) for s in seeds]
    rand = [trials_to_best_branch("random", s) for s in seeds]
    # random search hits resnet/101 one trial in 12: 3 of 5 in a row almost never happens in 40 trials
    assert statistics.median(tpe) < statistics.median(rand), (tpe, rand)
    assert sum(t <= 40 for t in tpe) >= 4, tpe


def test_a_child_written_before_its_parent_is_asked_after_it():
    """Asked in the file's order, momentum (written first) found no optimizer yet and was never set."""
    space = spec_of(
        {
            "momentum": {"type": "float", "low": 0.5, "high": 0.9, "when": {"optimizer": "sgd"}},
            "optimizer": {"type": "categorical", "choices": ["adam", "sgd"]},
        }
    ).space
    assert conditions.order(space) == ["optimizer", "momentum"]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    distributions = {n: FloatDistribution(0.5, 0.9) if n == "momentum" else CategoricalDistribution(["adam", "sgd"])
                     for n in space}  # fmt: skip
    trials = [conditions.ask(study, distributions, space) for _ in range(12)]
    sgd = [t for t in trials if t.params["optimizer"] == "sgd"]
    assert sgd and all("momentum" in t.params for t in sgd)
    assert all("momentum" not in t.params for t in trials if t.params["optimizer"] == "adam")

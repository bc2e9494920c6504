"""Samplers and pruners as a space file names them: each one builds, and building changes nothing."""

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from search.driver.bridge_settings import BridgeSettings
from search.driver.optuna_bridge import OptunaBridge
from search.space import samplers
from search.space.loading import validate
from search.space.spec import PRUNERS, SAMPLERS

BASE = {
    "name": "unit",
    "trainable": "addition-cnn",
    "space": {"lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}},
    "trials": 4,
}


def spec_with(**section):
    return validate({**BASE, **section}, "unit.yaml")


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_sampler_builds_from_its_name(name):
    extra = {"space": {"lr": {"type": "categorical", "choices": [1e-3, 1e-2]}}} if name in ("grid", "ofat") else {}
    sampler = samplers.build_sampler(spec_with(sampler={"name": name, "seed": 3}, **extra), "unit.yaml")
    assert isinstance(sampler, optuna.samplers.BaseSampler)
    if name in ("tpe", "cmaes", "gp", "qmc", "random"):
        expected = {"tpe": "TPESampler", "cmaes": "CmaEsSampler", "gp": "GPSampler", "qmc": "QMCSampler"}
        assert type(sampler).__name__ == expected.get(name, "RandomSampler")


@pytest.mark.parametrize("name", PRUNERS)
def test_every_pruner_builds_from_its_name(name):
    options = {
        "percentile": {"percentile": 25.0},
        "threshold": {"lower": 0.1},
        "patient": {"patience": 2, "wrapped": {"name": "median"}},
    }
    pruner = samplers.build_pruner(spec_with(pruner={"name": name, **options.get(name, {})}), "unit.yaml")
    assert isinstance(pruner, optuna.pruners.BasePruner)
    if name == "patient":
        assert isinstance(pruner._wrapped_pruner, optuna.pruners.MedianPruner)  # what it wraps, as named


def test_building_leaves_the_space_as_it_was_given():
    spec = spec_with(
        sampler={"name": "tpe", "seed": 7, "n_startup_trials": 3},
        pruner={"name": "patient", "patience": 1, "wrapped": {"name": "median", "n_warmup_steps": 2}},
    )
    before = spec.model_dump()
    samplers.build_sampler(spec, "unit.yaml")
    samplers.build_pruner(spec, "unit.yaml")
    samplers.build_pruner(spec, "unit.yaml")  # twice: a resumed or reseeded sweep builds again
    assert spec.model_dump() == before


def test_a_patient_pruner_prunes_a_trial_that_stopped_improving():
    pruner = samplers.build_pruner(spec_with(pruner={"name": "patient", "patience": 1}), "unit.yaml")
    study = optuna.create_study(direction="maximize", pruner=pruner)
    bridge = OptunaBridge(study, BridgeSettings({"x": FloatDistribution(0, 1)}, ["score"], ["max"], n_trials=1))
    bridge.ask("a")
    pruned_at = None
    for step, score in enumerate([0.5, 0.6, 0.6, 0.55, 0.5], start=1):
        bridge.report("a", {"score": score, "step": step})
        if bridge.should_prune("a"):
            pruned_at = step
            break
    bridge.complete("a", None, error=False)
    # best 0.6 at steps 2-3; at step 5 the last two steps (patience 1, +1) are all below it
    assert pruned_at == 5
    assert study.trials[0].state == TrialState.PRUNED


def test_a_minimizing_sweep_keeps_its_lowest_value_as_best():
    study = optuna.create_study(direction="minimize")
    bridge = OptunaBridge(study, BridgeSettings({"x": FloatDistribution(0, 1)}, ["loss"], ["min"], n_trials=2))
    for ray_id, losses in (("a", [0.9, 0.4, 0.6]), ("b", [0.8, 0.7])):
        bridge.ask(ray_id)
        for step, loss in enumerate(losses, start=1):
            bridge.report(ray_id, {"loss": loss, "step": step})
        bridge.complete(ray_id, None, error=False)
    assert [t.value for t in study.trials] == [0.4, 0.7] and study.best_trial.number == 0


def test_the_scheduler_is_built_once_with_its_options_and_attached_when_the_sweep_runs():
    from search.driver.tune_glue import PruningScheduler, ReportingASHA, build_scheduler

    spec = spec_with(scheduler={"name": "asha", "grace_period": 2, "max_t": 30})
    asha = build_scheduler(spec, "unit.yaml", "exact_match", "max")
    assert isinstance(asha, ReportingASHA) and (asha._max_t, asha._metric, asha._mode) == (30, "exact_match", "max")
    assert isinstance(build_scheduler(spec_with(), "unit.yaml", "exact_match", "max"), PruningScheduler)
    bridge = OptunaBridge(
        optuna.create_study(), BridgeSettings({"x": FloatDistribution(0, 1)}, ["exact_match"], ["max"], 1)
    )
    asha.attach(bridge, 10.0)
    assert asha.bridge is bridge and asha.watch.limit_s == 10.0


def test_the_baseline_is_a_point_of_the_space_and_says_where_a_default_was_left(write_space):
    """hpsearch train SPACE and OFAT start from it: a trainable's default outside the space gives way to the
    space's own middle (first choice, middle of a range, geometric on a log scale), with a note."""
    from search.space.loading import load
    from search.space.samplers import baseline_notes

    space = {
        "name": "b",
        "trainable": "image-classifier",
        "config": {"dataset": "digits", "epochs": 1},
        "sampler": {"name": "ofat"},  # the sampler that starts from a config value of a searched parameter
        "space": {
            "batch_size": {"type": "categorical", "choices": [16, 32, 64]},  # default 128: not among them
            "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},  # default 0.001: in the range
            "dropout": {"type": "float", "low": 0.1, "high": 0.5, "step": 0.1},  # default 0.0: below it
            "epochs": {"type": "int", "low": 2, "high": 9},  # in config: the config's value, as given
        },
    }
    spec, _ = load(str(write_space(space)))
    point, notes = baseline_notes(spec)
    assert point == {"batch_size": 16, "lr": 0.001, "dropout": 0.3, "epochs": 1}
    assert [n.split(" ")[0] for n in notes] == ["batch_size=16", "dropout=0.3"]
    assert "the trainable's default 128 is not in the space" in notes[0]
    decay = {"weight_decay": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}
    point, _ = baseline_notes(load(str(write_space({**space, "space": decay})))[0])
    assert point["weight_decay"] == pytest.approx(1e-3)  # default 0.0 is outside: the geometric middle


@pytest.mark.parametrize(("value", "inside"), [(4, False), (5, True), (1, True), (9, True), (10, False), (4.0, False)])
def test_a_value_off_an_int_ranges_step_is_not_in_the_space(value, inside):
    """OFAT's baseline takes a trainable's default only where the sampler could draw it: 4 is not on
    low 1, step 2 (1, 3, 5, 7, 9)."""
    from search.space.params import IntParam
    from search.space.samplers import in_space

    assert in_space(IntParam(type="int", low=1, high=9, step=2), value) is inside

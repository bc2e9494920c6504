"""Optuna samplers and pruners by name, with their options checked before anything runs.

Ray Tune's own searchers drop misspelled keyword options silently; here an option the Optuna class does
not take is an error naming the key, and a value it rejects is an error naming the value.
"""

from __future__ import annotations

import inspect
import math
import random
import time
import warnings
from typing import Any, Callable

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from pydantic import TypeAdapter, ValidationError

from search.errors import SpecError, shorten
from search.space import conditions
from search.space.params import CategoricalParam, FloatParam, IntParam, Param
from search.space.pareto import ParetoPruner
from search.space.spec import MAX_GRID, PRUNERS, SAMPLERS, SweepSpec

DEFAULT_TRIALS = 20


class AskTellGridSampler(optuna.samplers.GridSampler):
    """GridSampler whose ``after_trial`` does not call ``study.stop()``.

    That call only works inside ``study.optimize``; under ask/tell it raises. The sweep's trial count
    (the grid size by default) is what ends a grid sweep here.
    """

    def after_trial(self, study: optuna.Study, trial: Any, state: Any, values: Any) -> None:
        pass


def sampler_class(name: str) -> Callable[..., optuna.samplers.BaseSampler]:
    """Optuna's sampler for a name of ``spec.SAMPLERS`` (the one list of them); grid is AskTellGridSampler."""
    return AskTellGridSampler if name == "grid" else getattr(optuna.samplers, SAMPLERS[name])


def pruner_class(name: str) -> Callable[..., optuna.pruners.BasePruner]:
    """Optuna's pruner for a name of ``spec.PRUNERS`` (the one list of them): ``none`` is NopPruner, the
    others are named alike (successive_halving: SuccessiveHalvingPruner)."""
    if name == "none":
        return optuna.pruners.NopPruner
    return getattr(optuna.pruners, "".join(word.title() for word in name.split("_")) + "Pruner")


def distributions(spec: SweepSpec) -> dict[str, BaseDistribution]:
    out: dict[str, BaseDistribution] = {}
    for name, p in spec.space.items():
        if isinstance(p, FloatParam):
            out[name] = FloatDistribution(p.low, p.high, log=p.log, step=p.step)
        elif isinstance(p, IntParam):
            out[name] = IntDistribution(p.low, p.high, log=p.log, step=p.step)
        else:
            out[name] = CategoricalDistribution(p.choices)
    return out


def _grid_values(spec: SweepSpec, source: str, sampler: str) -> dict[str, list[Any]]:
    sizes = {}
    for name, p in spec.space.items():
        sizes[name] = p.size()
        if sizes[name] is None:
            raise SpecError(
                f"the {sampler} sampler needs a finite set of values: give this float a step, or use choices",
                source,
                f"space.{name}",
            )
    # Counted before anything is listed: a step of 1e-7 must not cost minutes and gigabytes to refuse.
    if sampler == "grid":
        total = conditions.count(spec.space, sizes) if spec.conditional else math.prod(sizes.values())
    else:
        total = 1 + sum(n - 1 for n in sizes.values())
    if total > MAX_GRID:
        raise SpecError(
            f"the {sampler} sweep has {total:,} configurations (at most {MAX_GRID:,}): use a coarser step, "
            "fewer choices or another sampler",
            source,
            "space",
        )
    return {name: p.values() for name, p in spec.space.items()}


def baseline(spec: SweepSpec) -> dict[str, Any]:
    """The point an OFAT sweep varies around (and ``hpsearch train SPACE`` runs): see ``baseline_notes``."""
    return baseline_notes(spec)[0]


def baseline_notes(spec: SweepSpec) -> tuple[dict[str, Any], list[str]]:
    """A point of the space: each searched parameter at the space file's config value, else the trainable's
    default when the space holds it, else the space's own middle (the first choice; the middle of a range,
    geometric on a log scale). The notes say where a default was left for the space's point."""
    defaults = spec.resolved.defaults()
    point, notes = {}, []
    for name in conditions.order(spec.space):
        p = spec.space[name]
        if not conditions.holds(p.when, point):
            continue  # a branch the baseline did not choose
        if name in spec.config:
            point[name] = spec.config[name]
        elif name in defaults and in_space(p, defaults[name]):
            point[name] = defaults[name]
        else:
            point[name] = middle(p)
            if name in defaults:
                notes.append(f"{name}={point[name]} (the trainable's default {defaults[name]!r} is not in the space)")
    return point, notes


def in_space(p: Param, value: Any) -> bool:
    """Whether a value is one the sampler could draw for this parameter."""
    if isinstance(p, CategoricalParam):
        return any(value == c and isinstance(value, bool) == isinstance(c, bool) for c in p.choices)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not p.low <= value <= p.high:
        return False
    if isinstance(p, IntParam):
        return float(value).is_integer() and (int(value) - p.low) % p.step == 0
    return p.step is None or any(math.isclose(value, v, abs_tol=1e-12) for v in p.values())


def middle(p: Param) -> Any:
    """The space's own centre: the first choice, or the middle of a range (geometric on a log scale),
    on its step."""
    if isinstance(p, CategoricalParam):
        return p.choices[0]
    mid = math.sqrt(p.low * p.high) if p.log else (p.low + p.high) / 2
    if isinstance(p, IntParam):
        return min(p.values(), key=lambda v: (abs(v - mid), v))
    if p.step is not None:
        return min(p.values(), key=lambda v: (abs(v - mid), v))
    return mid


def ofat_points(spec: SweepSpec, source: str) -> list[dict[str, Any]]:
    """One-factor-at-a-time: the baseline, then each searched value with the others at baseline. In a
    conditional space each branch has its own baseline (its choice, its parameters at their baseline), and
    its parameters vary around that one."""
    grid = _grid_values(spec, source, "ofat")
    for name, value in spec.config.items():  # a config value it starts from must be a point of the space
        if name in spec.space and not in_space(spec.space[name], value):
            raise SpecError(
                f"{shorten(value)} is not in space.{name}, so an ofat sweep cannot start from it: put it in the "
                "space or leave it out of config (the baseline is then the trainable's default or the space's middle)",
                source,
                f"config.{name}",
            )
    if not spec.conditional:
        base = baseline(spec)
        return [base] + [{**base, name: v} for name, values in grid.items() for v in values if v != base[name]]
    fill = baseline_everywhere(spec)
    points = [conditions.complete(spec.space, {}, fill)]

    def vary(base: dict[str, Any], names: list[str]) -> None:
        for name in names:
            for v in grid[name]:
                point = conditions.complete(spec.space, {**base, name: v}, fill)
                if point not in points:
                    points.append(point)
                    vary(point, [m for m in point if m not in base])  # the branch this choice opened

    vary(points[0], list(points[0]))
    return points


def baseline_everywhere(spec: SweepSpec) -> dict[str, Any]:
    """Each parameter's baseline value as if its branch were chosen (a conditional OFAT's fill)."""
    flat = spec.model_copy(update={"space": {k: p.model_copy(update={"when": None}) for k, p in spec.space.items()}})
    return baseline(flat)


def grid_points(spec: SweepSpec, source: str) -> list[dict[str, Any]]:
    """A conditional grid's points (the tree enumerated), enqueued in turn: Optuna's GridSampler takes one
    flat product."""
    return conditions.points(spec.space, _grid_values(spec, source, "grid"))


def trial_count(spec: SweepSpec, source: str) -> int:
    if spec.trials is not None:
        return spec.trials
    if spec.sampler.name == "grid" and spec.conditional:
        return len(grid_points(spec, source))
    if spec.sampler.name == "grid":
        return math.prod(len(values) for values in _grid_values(spec, source, "grid").values())
    if spec.sampler.name == "ofat":
        return len(ofat_points(spec, source))
    return DEFAULT_TRIALS


def construct(kind: str, name: str, cls: Callable[..., Any], options: dict[str, Any], source: str) -> Any:
    params = inspect.signature(cls).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    for key in options:
        if key not in params and not takes_any:
            accepted = ", ".join(k for k in params if k not in ("self", "search_space", "wrapped_pruner"))
            raise SpecError(f"unknown option for the {name} {kind} (it takes: {accepted})", source, f"{kind}.{key}")
    _check_types(kind, name, cls, options, source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return cls(**options)
    except (TypeError, ValueError, AssertionError) as e:  # Ray's schedulers check options with assert
        shown = ", ".join(f"{k}={v!r}" for k, v in options.items())
        raise SpecError(f"the {name} {kind} rejects {shown or 'its defaults'}: {e}", source, kind) from None


def _check_types(kind: str, name: str, cls: Callable[..., Any], options: dict[str, Any], source: str) -> None:
    """Each option against the class's own annotation: Optuna checks few at construction, and a wrong type
    (``n_startup_trials: ten``) would otherwise fail mid-sweep, in the first trial that uses it."""
    module_globals = getattr(inspect.unwrap(getattr(cls, "__init__", cls)), "__globals__", {})
    params = inspect.signature(cls).parameters
    for key, value in options.items():
        annotation = params[key].annotation if key in params else inspect.Parameter.empty
        if annotation is inspect.Parameter.empty:
            continue
        try:  # one at a time: a class may annotate some parameters with names only a type checker sees
            if isinstance(annotation, str):
                annotation = eval(annotation, module_globals)  # noqa: S307 (the library's own annotation text)
            adapter = TypeAdapter(annotation)
        except Exception:  # unresolvable, or a type pydantic cannot check (a class of Optuna's own): left to it
            continue
        try:
            adapter.validate_python(value, strict=True)
        except ValidationError:
            wanted = str(annotation).replace("typing.", "").replace("<class '", "").replace("'>", "")
            raise SpecError(
                f"the {name} {kind} expects {wanted} (got {shorten(value)})", source, f"{kind}.{key}"
            ) from None


def build_sampler(spec: SweepSpec, source: str) -> optuna.samplers.BaseSampler:
    name = spec.sampler.name
    options = dict(spec.sampler.options)  # a copy: building never rewrites the space as it was given
    if spec.sampler.seed is not None:
        options["seed"] = spec.sampler.seed
    if name == "grid" and spec.conditional:
        grid_points(spec, source)  # validates that every parameter has finite values; they are enqueued
        return optuna.samplers.RandomSampler(seed=options.get("seed"))
    if name == "grid":
        options["search_space"] = _grid_values(spec, source, "grid")
    if name == "ofat":
        ofat_points(spec, source)  # validates that every parameter has finite values
    if name == "tpe" and spec.fuse > 1:
        # A fused group's members are asked together, before any of them is told: the constant liar
        # counts the running ones as bad, so one group does not sample the same point again and again.
        options.setdefault("constant_liar", True)
    if name == "cmaes" and spec.conditional:
        raise SpecError(
            "the cmaes sampler needs every parameter in every trial; a conditional space (when:, choices with "
            "their own parameters) takes tpe, random, qmc, gp, nsga2, nsga3, grid or ofat",
            source,
            "sampler.name",
        )
    if name == "tpe" and spec.conditional:
        # Optuna's answer to a conditional space: TPE models the parameters that are set together jointly,
        # per group of trials that set the same ones (multivariate with groups).
        options.setdefault("multivariate", True)
        options.setdefault("group", True)
    if name == "cmaes" and any(isinstance(p, CategoricalParam) for p in spec.space.values()):
        options.setdefault("warn_independent_sampling", False)
    with warnings.catch_warnings():
        # multivariate and group are "experimental" to Optuna since 2.x: said on every run, it is noise here
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return construct("sampler", name, sampler_class(name), options, source)


REHEARSAL_TRIALS = 120
REHEARSAL_SECONDS = 2.0


def rehearse(spec: SweepSpec, source: str, modes: list[str]) -> None:
    """Run a fresh copy of the sampler through enough ask/tell rounds, on an in-memory study, to use the
    options it was given. Some options are checked only where a sampler first uses them (NSGA-III's
    ``reference_points`` at its second generation, TPE's ``gamma`` after its start-up trials), and their
    annotations are too loose to check by type: without this they fail mid-sweep, trials in.

    Only a sampler given options is rehearsed (the defaults are Optuna's own, and tested there), and for
    at most REHEARSAL_TRIALS rounds or REHEARSAL_SECONDS."""
    options = spec.sampler.options
    if not options or spec.sampler.name in ("grid", "ofat"):
        return
    population = options.get("population_size", 50)
    startup = options.get("n_startup_trials", 10)
    rounds = min(REHEARSAL_TRIALS, 2 * population + 2 if spec.sampler.name.startswith("nsga") else startup + 2)
    directions = ["maximize" if m == "max" else "minimize" for m in modes]
    space = distributions(spec)
    rng = random.Random(0)
    started = time.monotonic()
    trial = study = None
    verbosity = optuna.logging.get_verbosity()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the sweep's own sampler has already said what it warns of
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            study = optuna.create_study(sampler=build_sampler(spec, source), directions=directions)
            for _ in range(max(rounds, 0)):
                trial = conditions.ask(study, space, spec.space) if spec.conditional else study.ask(space)
                study.tell(trial, [rng.random() for _ in directions])
                trial = None
                if time.monotonic() - started > REHEARSAL_SECONDS:
                    break
    except SpecError:
        raise
    except Exception as e:
        at = f"sampler.{next(iter(options))}" if len(options) == 1 else "sampler"
        line = f"{type(e).__name__}: {e}".strip().splitlines()[0]
        number = (len(study.trials) - 1 if study else 0) if trial is None else trial.number
        raise SpecError(
            f"the {spec.sampler.name} sampler fails with these options at trial {number} of a rehearsal "
            f"({line[:200]}): check {', '.join(sorted(options))}",
            source,
            at,
        ) from None
    finally:
        optuna.logging.set_verbosity(verbosity)


def build_pruner(spec: SweepSpec, source: str) -> optuna.pruners.BasePruner:
    """The study's pruner. Under ``pareto`` that is Optuna's NopPruner: the bridge asks the front pruner."""
    name = spec.pruner.name
    options = dict(spec.pruner.options)  # a copy: building never rewrites the space as it was given
    if name == "pareto":
        return optuna.pruners.NopPruner()
    if name == "patient":
        inner = options.pop("wrapped", {"name": "none"})
        wrappable = [p for p in PRUNERS if p not in ("patient", "pareto")]
        if not isinstance(inner, dict) or inner.get("name") not in wrappable:
            raise SpecError(
                f"patient needs 'wrapped: {{name: <pruner>, ...}}' naming one of {', '.join(wrappable)}"
                f" (got {shorten(inner)})",
                source,
                "pruner.wrapped",
            )
        inner_options = {k: v for k, v in inner.items() if k != "name"}
        # Patient prunes only where its wrapped pruner agrees: wrapping Optuna's NopPruner would never prune,
        # so "none" (the default) wraps nothing and patience alone decides.
        wrapped = None if inner["name"] == "none" else pruner_class(inner["name"])
        if wrapped is not None:
            options["wrapped_pruner"] = construct("pruner", inner["name"], wrapped, inner_options, source)
        else:
            options["wrapped_pruner"] = None
    return construct("pruner", name, pruner_class(name), options, source)


def build_front_pruner(spec: SweepSpec, source: str) -> ParetoPruner | None:
    """``pruner: pareto`` with its options checked (one objective or several); None under any other."""
    if spec.pruner.name != "pareto":
        return None
    return construct("pruner", "pareto", ParetoPruner, dict(spec.pruner.options), source)

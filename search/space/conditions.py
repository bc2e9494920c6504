"""Conditional search spaces: a parameter set only in the trials where it means something.

A space file says it two ways, and both become one flat space here (``flatten``), each parameter with the
conditions it is set under (its ``when``, a mapping of categorical parameters to the values they must hold):

- ``momentum: {type: float, low: 0.5, high: 0.99, when: {optimizer: sgd}}``
- ``model: {type: categorical, choices: {vgg: {kernel_size: {...}}, alexnet: {}}}``: each choice's own
  parameters get ``when: {model: [vgg]}``. The same name in two branches of one parameter is one parameter
  when both define it alike (``when: {model: [vgg, resnet]}``); defined otherwise it is refused.

A trial samples the parameters in an order where each comes after those it depends on (``order``) and skips
those whose conditions do not hold (``active``), so an inactive parameter is absent from the trial's
parameters, from its config (the trainable's default applies) and from everything that shows it. That is
Optuna's define-by-run (``ask``): TPE, random, QMC, GP and NSGA sample such a space, each of them learning
from the trials that set a parameter.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution

from search.space.params import CategoricalParam, Param

Conditions = dict[str, list[Any]]  # parameter -> the values under which a dependent is set


def same(a: Any, b: Any) -> bool:
    """One value as a sampler sees it: 16 and 16.0 are one; True and 1 are not."""
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def holds(when: Conditions | None, values: dict[str, Any]) -> bool:
    """Whether a parameter with these conditions is set, given the values sampled so far (a parent that is
    not set itself sets none of its dependents)."""
    return not when or all(k in values and any(same(values[k], v) for v in vs) for k, vs in when.items())


def is_conditional(space: dict[str, Param]) -> bool:
    return any(p.when for p in space.values())


def flatten(space: dict[str, Param]) -> dict[str, Param]:
    """The space with every branch's parameters lifted beside the others, each with its conditions; a
    categorical's choices a plain list. Raises ValueError ``space.<path>: ...`` for a name defined twice."""
    out: dict[str, Param] = {}
    where: dict[str, str] = {}  # name -> where the space file defines it (for the error)

    def add(name: str, param: Param, when: Conditions | None, at: str) -> None:
        own = dict(param.when or {})
        if when:
            (parent,) = when
            if parent in own:
                raise ValueError(f"{at}.when: {parent} is already set by the branch this parameter sits in")
            own = {**when, **own}
        branches = param.branches if isinstance(param, CategoricalParam) else {}
        flat = param.model_copy(update={"when": own or None, **({"choices": param.values()} if branches else {})})
        if name in out:
            flat = _merge(name, out[name], flat, where[name], at)
        out[name], where[name] = flat, where.get(name, at)
        for choice, children in branches.items():
            for child, p in children.items():
                add(child, p, {name: [choice]}, f"{at}.choices.{choice}.{child}")

    for name, param in space.items():
        add(name, param, None, f"space.{name}")
    return out


def _merge(name: str, old: Param, new: Param, old_at: str, at: str) -> Param:
    """One parameter that two branches of the same parameter define alike: set under either choice."""
    same_shape = old.model_dump(exclude={"when"}) == new.model_dump(exclude={"when"})
    a, b = old.when or {}, new.when or {}
    if not same_shape:
        raise ValueError(f"{at}: {name} is also defined at {old_at}, otherwise: define it alike or name it apart")
    if len(a) != 1 or a.keys() != b.keys() or len(old_at.split(".choices.")) != len(at.split(".choices.")):
        raise ValueError(f"{at}: {name} is also defined at {old_at}: a name may repeat only across the choices "
                         "of one parameter; name it apart")  # fmt: skip
    (parent,) = a
    return old.model_copy(update={"when": {parent: [*a[parent], *b[parent]]}})


def check(space: dict[str, Param]) -> None:
    """Every ``when`` names a categorical parameter of the space and values among its choices, and no
    parameter depends on itself through others. Raises ValueError ``space.<name>.when...: ...``."""
    for name, param in space.items():
        for key, values in (param.when or {}).items():
            at = f"space.{name}.when.{key}"
            if key == name:
                raise ValueError(f"{at}: a parameter cannot be conditional on itself")
            if key not in space:
                raise ValueError(f"{at}: no searched parameter {key!r} (searched: {', '.join(space)})")
            parent = space[key]
            if not isinstance(parent, CategoricalParam):
                raise ValueError(f"{at}: {key} is a {parent.type} range; when: names a categorical parameter")
            for v in values:
                if not any(same(v, c) for c in parent.values()):
                    shown = ", ".join(map(str, parent.values()))
                    raise ValueError(f"{at}: {v!r} is not one of {key}'s choices ({shown})")
    order(space)


def order(space: dict[str, Param]) -> list[str]:
    """The names, each after those its conditions name (the file's order otherwise); a cycle raises."""
    done: list[str] = []
    visiting: list[str] = []

    def visit(name: str) -> None:
        if name in done:
            return
        if name in visiting:
            cycle = " -> ".join([*visiting[visiting.index(name) :], name])
            raise ValueError(f"space.{visiting[visiting.index(name)]}.when: a cycle: {cycle}")
        visiting.append(name)
        for parent in space[name].when or {}:
            if parent in space:
                visit(parent)
        visiting.pop()
        done.append(name)

    for name in space:
        visit(name)
    return done


def active(space: dict[str, Param], values: dict[str, Any]) -> list[str]:
    """The parameters a trial with these values sets: those whose conditions hold on the values of active
    parameters (a value of an inactive one sets nothing). One it sets may still be missing from ``values``
    (a trial killed while it was sampled)."""
    on: list[str] = []
    chosen: dict[str, Any] = {}
    for name in order(space):
        if holds(space[name].when, chosen):
            on.append(name)
            if name in values:
                chosen[name] = values[name]
    return on


def requires(space: dict[str, Param], name: str) -> dict[str, Any]:
    """The values that make ``name`` active: each condition's first value, and those its parents need."""
    out: dict[str, Any] = {}
    for parent, values in (space[name].when or {}).items():
        out |= requires(space, parent) | {parent: values[0]}
    return out


def each_requirement(space: dict[str, Param], name: str) -> list[dict[str, Any]]:
    """``requires``, then each other value of each of ``name``'s conditions in its turn (the rest at their
    first): ``step_size`` under ``when: {lr_schedule: [step, cosine]}`` is checked with cosine too."""
    first = requires(space, name)
    out = [first]
    for parent, values in (space[name].when or {}).items():
        out += [first | requires(space, parent) | {parent: value} for value in values[1:]]
    return out


def complete(space: dict[str, Param], point: dict[str, Any], fill: dict[str, Any]) -> dict[str, Any]:
    """``point`` made a whole point of the space: inactive parameters dropped, newly active ones set from
    ``fill``; in sampling order."""
    out: dict[str, Any] = {}
    for name in order(space):
        if holds(space[name].when, out):
            out[name] = point[name] if name in point else fill[name]
    return out


def points(space: dict[str, Param], values: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every point of a conditional grid: the tree enumerated, each branch's parameters once per choice
    that sets them (not multiplied by the branches that do not)."""
    names = order(space)
    out: list[dict[str, Any]] = [{}]
    for name in names:
        grown = []
        for point in out:
            if holds(space[name].when, point):
                grown += [{**point, name: v} for v in values[name]]
            else:
                grown.append(point)
        out = grown
    return out


def count(space: dict[str, Param], sizes: dict[str, int]) -> int:
    """How many points ``points`` would list, without listing them (a grid is refused above a size)."""
    names = order(space)

    def n(fixed: dict[str, Any], rest: list[str]) -> int:
        for i, name in enumerate(rest):
            if not holds(space[name].when, fixed):
                continue
            dependents = [m for m in rest[i + 1 :] if name in (space[m].when or {})]
            if not dependents:
                return sizes[name] * n(fixed, rest[i + 1 :])
            p = space[name]
            return sum(n({**fixed, name: v}, rest[i + 1 :]) for v in p.values())  # a branching parameter
        return 1

    return n({}, names)


def ask(study: optuna.Study, distributions: dict[str, BaseDistribution], space: dict[str, Param]) -> optuna.Trial:
    """A new trial, its active parameters suggested in order (enqueued values are taken as given)."""
    trial = study.ask()
    values: dict[str, Any] = {}
    for name in order(space):
        if holds(space[name].when, values):
            values[name] = suggest(trial, name, distributions[name])
    return trial


def suggest(trial: optuna.Trial, name: str, d: BaseDistribution) -> Any:
    if isinstance(d, CategoricalDistribution):
        return trial.suggest_categorical(name, d.choices)
    if isinstance(d, IntDistribution):
        return trial.suggest_int(name, d.low, d.high, step=d.step, log=d.log)
    return trial.suggest_float(name, d.low, d.high, step=d.step, log=d.log)

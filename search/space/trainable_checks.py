"""A space file checked against its trainable, before anything runs: every configured or searched name
is one of its hyperparameters, of the right type and range at the space's extremes; it can fuse or report
by time if asked to; its own preflight (a dataset folder, a model name) passes for each choice.

The checks read the parsed ``SweepSpec`` (``loading.validate`` calls them) and the trainable's
declaration (``trainables/registry.py``); a problem is one ``SpecError`` naming the key.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from search.errors import SpecError, shorten
from search.names import mlflow_name_problem
from search.space import conditions
from search.space.params import CategoricalParam, FloatParam, IntParam
from trainables import registry

if TYPE_CHECKING:
    from search.space.spec import SweepSpec


def resolve_trainable(spec: SweepSpec, source: str) -> registry.TrainableSpec:
    try:
        return registry.get(spec.trainable)
    except registry.TrainableError as e:
        raise SpecError(str(e), source, "trainable") from None


def check_against_trainable(spec: SweepSpec, trainable: registry.TrainableSpec, source: str) -> None:
    """Every configured or searched name must be a hyperparameter of the trainable, of the right type."""
    _check_abilities(spec, trainable, source)
    if spec.metric is None and trainable.metric is not None and (why := mlflow_name_problem(trainable.metric)):
        raise SpecError(f"it declares metric {shorten(trainable.metric)}, which cannot name a metric: {why} (rename it "
                        "where the trainable is declared)", source, "trainable")
    _check_metrics_reported(spec, trainable, source)
    if trainable.plain:
        for key in ("metric", "mode"):
            if getattr(spec, key) is None:
                want = "the name of what it returns or reports" if key == "metric" else "max or min"
                raise SpecError(f"a plain function declares no {key}: set {key}: to {want}", source, key)
        return  # its hyperparameter types are the space file's own
    _check_names_and_values(spec, trainable, source)
    for key, values in _variants(spec):
        try:
            params = trainable.params.model_validate(values)
        except ValidationError:
            continue  # a combination of choices: each value alone was checked above
        why = trainable.cannot_fuse(params) if spec.fuse > 1 and trainable.cannot_fuse is not None else None
        if why:
            raise SpecError(f"{spec.trainable} cannot fuse: {why}", source, "fuse" if key == "config" else key)
        if trainable.preflight is not None:
            try:
                trainable.preflight(params)
            except (ValueError, OSError) as e:
                raise SpecError(str(e).splitlines()[0], source, key) from None


def _check_abilities(spec: SweepSpec, trainable: registry.TrainableSpec, source: str) -> None:
    """What the sweep asks of the trainable as a whole: reporting by time, a fused form."""
    if spec.reports_by_time and not trainable.reports_by_time:
        why = "report: time" if spec.report == "time" else "a trial budget reports by time by default"
        raise SpecError(
            f"{spec.trainable} cannot report by wall-clock time ({why}); set report: epoch to compare trials"
            " at equal epochs instead",
            source,
            "report",
        )
    if spec.fuse > 1 and (trainable.fused is None or trainable.plain):
        raise SpecError(
            f"{spec.trainable} cannot fuse: it has no fused form ("
            + ", ".join(t.name for t in registry.all_trainables() if t.fused is not None and not t.plain)
            + " have one; docs/trainables.md says how to give your own one)",
            source,
            "fuse",
        )


def _check_metrics_reported(spec: SweepSpec, trainable: registry.TrainableSpec, source: str) -> None:
    """Each metric the sweep names (its objectives, its constraints) is one the trainable reports, when it
    declares what it reports: a misspelled one would otherwise fail every trial at its first report."""
    named = [("metric", m) for m in objectives(spec, trainable)[0]]
    named += [(f"constraints.{i}", c.metric) for i, c in enumerate(spec.constraint_list)]
    for key, metric in named:
        if not trainable.may_report(metric):
            raise SpecError(
                f"{spec.trainable} does not report {shorten(metric)} (it reports: {', '.join(trainable.reports)})",
                source,
                key,
            )


def _check_names_and_values(spec: SweepSpec, trainable: registry.TrainableSpec, source: str) -> None:
    """Each name is a hyperparameter; each fixed value, and each searched one at its extremes, validates."""
    fields = trainable.params.model_fields
    for section, names in (("config", spec.config), ("space", spec.space)):
        for name in names:
            if name not in fields:
                raise SpecError(
                    f"{spec.trainable} has no hyperparameter {name!r} (it takes: {', '.join(fields)})",
                    source,
                    f"{section}.{name}",
                )
    # One representative trial: catches wrong types and out-of-range values in config and space bounds.
    for name, param in spec.space.items():
        for value, required in itertools.product(_extremes(param), conditions.each_requirement(spec.space, name)):
            try:  # a branch's parameter with each value of its branch that sets it
                trainable.params.model_validate({**spec.config, **required, name: value})
            except ValidationError as e:
                err = e.errors()[0]
                key = ".".join(map(str, err["loc"])) or name
                section = "space" if key == name else "config"
                raise SpecError(
                    f"{err['msg'].removeprefix('Value error, ')} (got {shorten(err.get('input'))})",
                    source,
                    f"{section}.{key}" if section == "config" or not err["loc"] else f"space.{name}",
                ) from None


def _variants(spec: SweepSpec) -> list[tuple[str, dict[str, Any]]]:
    """The fixed settings, then each categorical choice (a model name, a dataset) once, in its branch."""
    first = _first_values(spec)

    def point(chosen: dict[str, Any]) -> dict[str, Any]:
        return {**spec.config, **conditions.complete(spec.space, chosen, first)}

    return [("config", point({}))] + [
        (f"space.{name}", point({**conditions.requires(spec.space, name), name: value}))
        for name, param in spec.space.items()
        if isinstance(param, CategoricalParam)
        for value in param.values()[1 if not param.when else 0 :]
    ]


def with_absolute_paths(spec: SweepSpec, trainable: registry.TrainableSpec) -> SweepSpec:
    """A copy whose local paths in config (fields marked ``LOCAL_PATH``) are absolute, so they mean the same
    on any worker, whatever its directory."""
    if trainable.plain:
        return spec  # it declares no paths; its trials run in the launch directory
    fields = trainable.params.model_fields
    config = dict(spec.config)
    for name, value in spec.config.items():
        extra = getattr(fields.get(name), "json_schema_extra", None) or {}
        if isinstance(value, str) and extra.get("local_path"):
            path = Path(value).expanduser()
            if value.startswith((".", "~")) or path.exists():
                config[name] = str(path.resolve())
    return spec.model_copy(update={"config": config}) if config != spec.config else spec


def _first_values(spec: SweepSpec) -> dict[str, Any]:
    return {name: _extremes(param)[0] for name, param in spec.space.items()}


def _extremes(param: FloatParam | IntParam | CategoricalParam) -> list[Any]:
    if isinstance(param, CategoricalParam):
        return param.values()
    return [param.low, param.high]


def objectives(spec: SweepSpec, trainable: registry.TrainableSpec) -> tuple[list[str], list[str]]:
    """The sweep's metrics and their modes, one or several; a single one defaults to the trainable's."""
    if isinstance(spec.metric, list):
        return list(spec.metric), list(spec.mode)  # lengths checked by the schema
    return [spec.metric or trainable.metric], [spec.mode or trainable.mode]

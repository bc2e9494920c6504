"""A space file read into a checked ``SweepSpec``: found by name or path, its YAML read safely, ``--set``
applied, validated against the schema (``spec.py``), then against its trainable (``trainable_checks.py``).

Everything a sweep needs is validated here, before anything is written to a store, so a bad file costs
one clear line and nothing else.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from search.errors import SpecError, shorten
from search.space.overrides import apply_overrides
from search.space.spec import SweepSpec
from search.space.trainable_checks import check_against_trainable, resolve_trainable, with_absolute_paths
from search.space.yaml_file import read_yaml
from trainables import registry

SPACES_DIR = Path(__file__).resolve().parents[2] / "spaces"


def resolve_path(name_or_path: str) -> Path:
    """A path to a YAML file, or the name of one under spaces/."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise SpecError("no such space file", str(path))
        return path
    for base in (Path.cwd() / "spaces", SPACES_DIR):
        for suffix in (".yaml", ".yml"):
            if (candidate := base / f"{name_or_path}{suffix}").is_file():
                return candidate
    known = ", ".join(space_names()) or "none"
    raise SpecError(f"no space file named {name_or_path!r} under spaces/ (known: {known})", name_or_path)


def space_names() -> list[str]:
    return sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))


def load(name_or_path: str, overrides: list[tuple[str, Any]] = ()) -> tuple[SweepSpec, Path]:
    """Read, override, validate. Raises SpecError with a one-line message on any problem."""
    path = resolve_path(name_or_path)
    source = str(path)
    raw = read_yaml(path, source)
    if not isinstance(raw, dict):
        raise SpecError(f"expected a mapping of keys at the top, got {type(raw).__name__}", source)
    raw = apply_overrides(raw, list(overrides))
    if isinstance(raw.get("trainable"), str) and registry.is_reference(raw["trainable"]):
        raw["trainable"] = resolve_reference(raw["trainable"], path.parent, source)
    return validate(raw, source), path


def resolve_reference(ref: str, space_dir: Path, source: str = "") -> str:
    """``./train.py:fn`` relative to the space file's folder, else to the working directory, made absolute
    (Ray runs trials elsewhere); for ``module:fn`` both folders go on the import path."""
    try:
        target, attr = registry.split_reference(ref)
    except registry.TrainableError as e:
        raise SpecError(str(e), source, "trainable") from None
    if not target.endswith(".py"):
        for folder in (Path.cwd(), space_dir):
            registry.add_import_dir(folder)
        return ref
    path = Path(target).expanduser()
    candidates = [path] if path.is_absolute() else [space_dir / path, Path.cwd() / path]
    for candidate in candidates:
        if candidate.is_file():
            return f"{candidate.resolve()}:{attr}"
    looked = " or ".join(dict.fromkeys(str(c.resolve().parent) for c in candidates))  # one folder once
    raise SpecError(f"no such file {target!r} (looked in {looked})", source, "trainable")


def validate(raw: dict[str, Any], source: str) -> SweepSpec:
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as e:
        message, key = _first_error(e)
        raise SpecError(message, source, key) from None
    trainable = spec._resolved = resolve_trainable(spec, source)
    check_against_trainable(spec, trainable, source)
    return with_absolute_paths(spec, trainable)


def _first_error(e: ValidationError) -> tuple[str, str]:
    # A misspelled key usually explains the "missing" error beside it, so it is reported first.
    err = sorted(e.errors(), key=lambda x: x["type"] != "extra_forbidden")[0]
    loc = [str(p) for p in err["loc"]]
    if loc and loc[0] == "space":
        loc = _without_tags(loc)
    if loc and loc[0] in ("metric", "mode"):  # one name or a list: drop the union's tags, keep list indices
        loc = [loc[0], *(p for p in loc[1:] if p.isdigit())]
    msg = err["msg"].removeprefix("Value error, ")
    named = re.match(r"([a-z_]+)((?:\.\w+)*): ", msg)
    if not loc and named and named.group(1) in SweepSpec.model_fields:  # a check across keys names its key
        loc, msg = named.group(0)[:-2].split("."), msg[named.end() :]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif err["type"] == "union_tag_invalid":
        msg = f"type must be one of float, int, categorical (got {err['input'].get('type')!r})"
        loc.append("type")
    elif err["type"] == "literal_error" and loc and loc[-1] == "name":
        msg = f"{msg} (got {shorten(err['input'])})"
    elif err["type"] not in ("value_error", "missing") and "input" in err:
        msg = f"{msg} (got {shorten(err['input'])})"
    return msg, ".".join(loc) or "(top)"


def _without_tags(loc: list[str]) -> list[str]:
    """A path into ``space:`` without the union tags pydantic puts in it: the parameter's type after each
    parameter name, and ``list`` / ``branches`` after ``choices`` (``space.model.choices.vgg.width.low``)."""
    out, i, expect = [loc[0]], 1, "name"
    while i < len(loc):
        part = loc[i]
        out.append(part)
        if expect == "name":  # a parameter's name, then its type's tag
            i, expect = i + (2 if i + 1 < len(loc) and loc[i + 1] in ("float", "int", "categorical") else 1), "key"
            continue
        if expect == "key" and part == "choices" and i + 1 < len(loc) and loc[i + 1] in ("list", "branches"):
            i, expect = i + 2, "choice" if loc[i + 1] == "branches" else "rest"
            continue
        expect = "name" if expect == "choice" else "rest"
        i += 1
    return out

"""``--set a.b.c=VALUE``: a key of the space file overridden from the command line, by its dotted path."""

from __future__ import annotations

import re
from typing import Any

import yaml

from search.errors import SpecError


def parse_override(text: str) -> tuple[str, Any]:
    """``a.b.c=VALUE`` -> ("a.b.c", VALUE parsed as a YAML scalar)."""
    key, sep, raw = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)*", key.strip()):
        raise SpecError(f"expected KEY=VALUE with a dotted KEY, got {text!r}", "--set")
    if re.fullmatch(r"\s*[-+]?0[xXoObB][0-9a-fA-F_]+\s*|\s*[-+]?0[0-7_]+\s*", raw):
        return key.strip(), raw.strip()  # YAML reads 0x10 as 16 and 010 as 8: a count is written in decimal
    try:
        return key.strip(), yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        raise SpecError(f"value {raw!r} is not a YAML scalar", "--set", key) from None


def apply_overrides(raw: dict[str, Any], overrides: list[tuple[str, Any]]) -> dict[str, Any]:
    for key, value in overrides:
        node = raw
        *parents, leaf = key.split(".")
        for i, part in enumerate(parents):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise SpecError(f"{'.'.join(parents[: i + 1])} is not a mapping", "--set", key)
            node = child
        node[leaf] = value
    return raw

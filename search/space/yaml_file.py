"""A space file read as YAML, safely: a size limit, no alias bombs (their count and what they expand to are
bounded), no duplicate keys, and one line naming the file for every way it can fail to be a mapping.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from search.errors import SpecError, shorten

MAX_FILE_BYTES = 1_000_000  # a space file is a page of YAML; anything this large is a mistake
MAX_ALIASES = 32  # enough to share a fragment; a YAML alias bomb needs more to blow up
# What the file holds once its aliases are expanded (each alias a copy, as JSON, MLflow's params and the
# trials' configs write it): 31 aliases under the alias limit can still turn 400 KB into 100 MB.
MAX_EXPANDED_CHARS = 2_000_000


class SpaceLoader(yaml.SafeLoader):
    """Safe YAML that refuses what a space file never needs and would only hide a mistake: a key given
    twice in one mapping (YAML keeps the last silently), and many aliases (a few hundred bytes of
    nested aliases expand to gigabytes)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.events.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise yaml.constructor.ConstructorError(None, None, f"more than {MAX_ALIASES} aliases", mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)):
                continue
            if key in seen:
                message = f"key {shorten(key)} appears twice (first on line {seen[key]})"
                raise yaml.constructor.ConstructorError(None, None, message, key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def expanded_size(data: Any, limit: int) -> int:
    """About how many characters ``data`` takes written out with every alias copied; counting stops just past
    ``limit`` (the walk never expands anything itself)."""
    size, stack = 0, [data]
    while stack and size <= limit:
        item = stack.pop()
        if isinstance(item, dict):
            size += 2 + 2 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            size += 2 + len(item)
            stack.extend(item)
        else:
            size += len(str(item))
    return size


def read_yaml(path: Path, source: str) -> Any:
    """The file's YAML, or a SpecError naming the line (and nothing else read)."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise SpecError(f"{path.stat().st_size:,} bytes; a space file is at most {MAX_FILE_BYTES:,}", source)
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=SpaceLoader)  # noqa: S506 (a SafeLoader)
        if (size := expanded_size(data, MAX_EXPANDED_CHARS)) > MAX_EXPANDED_CHARS:
            raise SpecError(
                f"expands to over {MAX_EXPANDED_CHARS:,} characters through its aliases (at least {size:,}); "
                "a space file is a page of YAML",
                source,
            )
        return data
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError(f"{where}not valid YAML ({problem})", source) from None
    except UnicodeDecodeError as e:
        raise SpecError(f"not UTF-8 text (byte {e.start}: {e.object[e.start : e.start + 1]!r})", source) from None
    except RecursionError:
        raise SpecError("nested too deeply to be a space file", source) from None
    except OSError as e:
        raise SpecError(f"cannot read: {e.strerror}", source) from None

"""The one exception type the CLI turns into a one-line message and its exit code (2: bad input)."""

from typing import Any

SHOWN_CHARS = 80  # an offending value is shown this long at most: the message stays one readable line


def shorten(value: Any, limit: int = SHOWN_CHARS) -> str:
    """``repr(value)``, cut to ``limit`` characters (a pasted blob or a YAML alias bomb stays one line)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 15]}... ({len(text):,} chars)"


class SpecError(Exception):
    """A bad input: the message names the file, the key and the value, in one line."""

    MAX_CHARS = 600
    exit_code = 2

    def __init__(self, message: str, source: str | None = None, key: str | None = None) -> None:
        where = ": ".join(p for p in (source, key) if p)
        text = " ".join((f"{where}: {message}" if where else message).splitlines())
        if len(text) > self.MAX_CHARS:  # whatever a value held, the message stays one readable line
            text = f"{text[: self.MAX_CHARS - 40]}... ({len(text):,} chars in all)"
        super().__init__(text)


class UnreachableError(SpecError):
    """A service the sweep needs (Ray cluster, database, tracking server) cannot be reached; ``source`` is the
    option that named it."""


class StoreFullError(SpecError):
    """The disk under the store filled up mid-sweep: the sweep stops (exit 1); what finished is kept, and
    ``hpsearch resume`` closes and re-runs the rest once there is space."""

    exit_code = 1

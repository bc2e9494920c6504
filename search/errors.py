"""What the user can fix, told in one line: ``UserError`` and its kinds, raised where the problem is found.

The CLI turns every ``UserError`` into ``error: <message>`` and the kind's exit code in one place
(``cli.Commands.invoke``); nothing else prints errors. Exit 2 means nothing was run or written (bad
input, an unreachable service, an unknown sweep); exit 1 a sweep that stopped on the way (a full disk).
The trainables' own ``TrainableError`` (trainables/ cannot import search/) is handled in the same place.
"""

from typing import Any

# Ctrl-C before a command began its work (modules loading, options parsed): said by cli.main and app.Commands
NOT_STARTED = "interrupted: the command had not started; nothing was recorded"

SHOWN_CHARS = 80  # an offending value is shown this long at most: the message stays one readable line


def shorten(value: Any, limit: int = SHOWN_CHARS) -> str:
    """``repr(value)``, cut to ``limit`` characters (a pasted blob or a YAML alias bomb stays one line)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 15]}... ({len(text):,} chars)"


class UserError(Exception):
    """Something the user can fix: the message says where (file, key or option) and what, in one line."""

    MAX_CHARS = 600
    exit_code = 2

    def __init__(self, message: str, source: str | None = None, key: str | None = None) -> None:
        where = ": ".join(p for p in (source, key) if p)
        text = " ".join((f"{where}: {message}" if where else message).splitlines())
        if len(text) > self.MAX_CHARS:  # whatever a value held, the message stays one readable line
            text = f"{text[: self.MAX_CHARS - 40]}... ({len(text):,} chars in all)"
        super().__init__(text)


class SpecError(UserError):
    """A bad input: a space file (``source``) and its key, a command-line option or argument."""


class UnreachableError(UserError):
    """A service the sweep needs (Ray cluster, database, tracking server) cannot be reached; ``source`` is the
    option that named it."""


class ServerError(UserError):
    """A server hpsearch starts for the user (optuna-dashboard, the MLflow UI) cannot start or answer."""


class SweepError(UserError):
    """The named sweep is not in the store, or not in a state for what was asked (resume a finished sweep,
    a report without two complete trials, a sweep another driver holds)."""


class StoreError(UserError):
    """The store itself: a file where its folder should be, a damaged database, no space to create it."""


class WriterLostError(UserError):
    """The MLflow writer process died mid-sweep (killed, out of memory): the sweep stops (exit 1) with what
    finished kept whole in both stores, and the rest left as a dead driver leaves it, for ``hpsearch resume``."""

    exit_code = 1


class TrackingRefusedError(UserError):
    """MLflow refused some of a sweep's writes (a value it will not take): the sweep ran to its end and the
    study holds every trial, but MLflow's runs lack what was refused, so the sweep does not end well (exit 1)."""

    exit_code = 1


class SamplerError(UserError):
    """The sampler raised while it sampled a trial (an option no check could judge, a sampler's own bug): the
    sweep stops (exit 1) with the sampler's words, what finished kept."""

    exit_code = 1


class StoreFullError(StoreError):
    """The disk under the store filled up mid-sweep: the sweep stops (exit 1); what finished is kept, and
    ``hpsearch resume`` closes and re-runs the rest once there is space."""

    exit_code = 1

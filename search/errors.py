"""The one exception type the CLI turns into a one-line message and exit code 2."""


class SpecError(Exception):
    """A bad input: the message names the file, the key and the value, in one line."""

    def __init__(self, message: str, source: str | None = None, key: str | None = None) -> None:
        where = ": ".join(p for p in (source, key) if p)
        super().__init__(f"{where}: {message}" if where else message)


class UnreachableError(SpecError):
    """A service the sweep needs (Ray cluster, database, tracking server) cannot be reached; ``source`` is the
    option that named it."""

"""How a number is shown in every table and line: light to import, for the read-only commands."""

from __future__ import annotations

from typing import Any


def fmt(v: Any) -> str:
    """Four significant digits; a whole count or size in full."""
    if isinstance(v, float):
        if v.is_integer() and 1e4 <= abs(v) < 1e9:  # a count or a size: every digit, no exponent
            return str(int(v))
        return f"{v:.4g}"
    return str(v)

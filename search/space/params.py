"""The searched parameters of a space file (``space:``): a float or an int range, or a list of choices,
each checked whole before anything runs (a range that is empty, a step that does not divide it, a NaN, a
bool where a number belongs), and the small types the rest of the schema shares.

A parameter may be conditional (``conditions.py``): ``when: {optimizer: sgd}`` sets it only in trials
whose ``optimizer`` is ``sgd``, and a categorical's ``choices`` may be a mapping of each choice to the
parameters only that choice takes (``model: {choices: {vgg: {kernel_size: ...}, alexnet: {}}}``).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag, model_validator

from search.errors import shorten


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _divides(low: float, high: float, step: float) -> bool:
    n = (high - low) / step
    return math.isclose(n, round(n), rel_tol=0, abs_tol=1e-9 * max(1.0, abs(n)))


Finite = Annotated[float, Field(allow_inf_nan=False)]  # a NaN or inf bound would only fail mid-sweep


def _not_a_bool(value: Any) -> Any:
    if isinstance(value, bool):  # pydantic's lax mode would read true as 1
        raise ValueError(f"expected a whole number, not {str(value).lower()}")
    return value


Count = Annotated[int, BeforeValidator(_not_a_bool)]  # a count: `true` is not 1


Choice = Union[bool, int, float, str, None]


def _as_lists(when: Any) -> Any:
    """``when: {optimizer: sgd}`` is ``{optimizer: [sgd]}``: each key lists the values it is set under."""
    if isinstance(when, dict):
        return {k: list(v) if isinstance(v, (list, tuple)) else [v] for k, v in when.items()}
    return when


class Searched(Strict):
    # Set only in trials whose named categorical parameters hold one of the listed values (conditions.py).
    when: Annotated[dict[str, list[Choice]], BeforeValidator(_as_lists)] | None = None

    @model_validator(mode="after")
    def _when_not_empty(self) -> "Searched":
        if self.when is not None and (not self.when or not all(self.when.values())):
            raise ValueError("when: name a categorical parameter and the value(s) it must hold, e.g. {optimizer: sgd}")
        return self


class FloatParam(Searched):
    type: Literal["float"]
    low: Finite
    high: Finite
    log: bool = False
    step: Finite | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _check(self) -> "FloatParam":
        _check_range(self.low, self.high, self.log, self.step)
        return self

    def size(self) -> int | None:
        """How many values a grid takes (None: continuous), without listing them."""
        return None if self.step is None else round((self.high - self.low) / self.step) + 1

    def values(self) -> list[float] | None:
        if self.step is None:
            return None
        n = round((self.high - self.low) / self.step)
        return [round(self.low + i * self.step, 12) for i in range(n + 1)]


class IntParam(Searched):
    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: int = Field(1, gt=0)

    @model_validator(mode="after")
    def _check(self) -> "IntParam":
        _check_range(self.low, self.high, self.log, None if self.step == 1 else self.step)
        return self

    def size(self) -> int:
        return (self.high - self.low) // self.step + 1

    def values(self) -> list[int]:
        return list(range(self.low, self.high + 1, self.step))


class CategoricalParam(Searched):
    type: Literal["categorical"]
    # A list of values; or a mapping of each value to the parameters that only it takes (its branch).
    choices: Annotated[
        Union[
            Annotated[list[Choice], Tag("list")],
            Annotated[dict[Union[bool, int, float, str], Optional[dict[str, "Param"]]], Tag("branches")],
        ],
        Discriminator(lambda v: "branches" if isinstance(v, dict) else "list"),
    ]

    @model_validator(mode="after")
    def _check(self) -> "CategoricalParam":
        if not self.choices:
            raise ValueError("choices must not be empty")
        for i, a in enumerate(self.values()):
            for b in self.values()[:i]:
                # 16 and 16.0 are one value to a sampler (and to Python); True and 1 are not meant as one
                if a == b and isinstance(a, bool) == isinstance(b, bool):
                    raise ValueError(f"choices repeat a value: {shorten(b)} and {shorten(a)}")
            if isinstance(a, float) and not math.isfinite(a):
                raise ValueError(f"choices must be finite numbers (got {a})")
        kinds = {"text" if isinstance(c, str) else "yes/no" if isinstance(c, bool) else "number"
                 for c in self.values() if c is not None}  # fmt: skip
        if len(kinds) > 1:
            raise ValueError(f"choices mix {' and '.join(sorted(kinds))}: {shorten(self.values())} (keep one kind)")
        return self

    @property
    def branches(self) -> dict[Any, dict[str, "Param"]]:
        """Each choice's own parameters, as the space file wrote them (empty for a list of choices)."""
        return {k: dict(v or {}) for k, v in self.choices.items()} if isinstance(self.choices, dict) else {}

    def size(self) -> int:
        return len(self.choices)

    def values(self) -> list[Any]:
        return list(self.choices)


def _check_range(low: float, high: float, log: bool, step: float | None) -> None:
    if low >= high:
        raise ValueError(f"low ({low}) must be below high ({high})")
    if log and low <= 0:
        raise ValueError(f"log scale needs low > 0 (got low={low})")
    if log and step is not None:
        raise ValueError("log and step cannot be combined")
    if step is not None and not _divides(low, high, step):
        raise ValueError(f"step {step} does not divide the range {low}..{high}")


Param = Annotated[Union[FloatParam, IntParam, CategoricalParam], Field(discriminator="type")]
CategoricalParam.model_rebuild()  # its branches hold Params

"""The strict, frozen base of every config section, its range helpers and its one-line validation errors."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from deepsmlm.errors import UserInputError

SEED_LIMIT = 2**63  # torch generators take seeds 0 <= seed < 2**63


class StrictConfig(BaseModel):
    """Unknown keys are errors; every float must be finite (no .inf / .nan anywhere); fields are read-only
    after validation (variants are new configs: :func:`deepsmlm.config.updated`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


ConfigT = TypeVar("ConfigT", bound=StrictConfig)


def check_range(value: tuple[float, float] | None, what: str = "") -> None:
    """A (low, high) range with 0 <= low <= high (or None); ValueError naming the values otherwise."""
    if value is None:
        return
    low, high = value
    if low < 0:
        raise ValueError(f"{what}[{low:g}, {high:g}]: low {low:g} is below 0")
    if high < low:
        raise ValueError(f"{what}[{low:g}, {high:g}]: low {low:g} exceeds high {high:g}")


def value_range(value: float | tuple[float, float]) -> tuple[float, float]:
    """(low, high) of a config value that is a number or a (low, high) range."""
    return (float(value), float(value)) if isinstance(value, (int, float)) else (float(value[0]), float(value[1]))


_UNION_TAGS = {"float", "int", "str", "bool"}  # pydantic names the branch of a union in an error's location


def format_validation_error(source: str, err: ValidationError) -> str:
    """One line: the source, the dotted key, the problem and the value given (of the deepest error: in a
    union, the branch that got furthest)."""
    errors = err.errors()
    shown = errors[0] if errors[0]["type"] == "extra_forbidden" else max(errors, key=lambda e: len(e["loc"]))
    loc = ".".join(str(p) for p in shown["loc"] if not (isinstance(p, str) and (p in _UNION_TAGS or "[" in p)))
    loc = loc or "<root>"
    if shown["type"] == "extra_forbidden":
        return f"{source}: unknown config key '{loc}'"
    msg = shown["msg"].removeprefix("Value error, ")
    value = shown.get("input")
    if shown["type"] != "value_error" and isinstance(value, (int, float, str)):
        msg += f" (got {value:g})" if isinstance(value, float) else f" (got {value!r})"
    return f"{source}: {loc}: {msg}"


def validated(model: type[ConfigT], data: dict, source: str) -> ConfigT:
    """``data`` validated as ``model``; UserInputError naming ``source`` and the key in one line on failure."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise UserInputError(format_validation_error(source, err)) from None

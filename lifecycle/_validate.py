"""Small argument checks shared by the public entry points; each names the offending field.

Every check raises `FieldTypeError` or `FieldValueError` (a `TypeError`/`ValueError` carrying
`field` and `code`). `LifecycleConfig` passes ``wrong_type=FieldValueError``: it promises
`ValueError` for wrong types too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ._text import quote
from .errors import FieldError, FieldTypeError, FieldValueError

__all__ = ["MAX_DURATION_SECS", "MAX_TEXT_LENGTH", "duration", "flag", "integer", "number", "quote", "text"]

MAX_TEXT_LENGTH = 256
"""Longest accepted service name, version or id; longer text is almost always a bug."""

MAX_DURATION_SECS = 365 * 24 * 3600.0
"""Longest accepted duration (timeouts, intervals, delays): one year. Longer is refused, so every
accepted value fits every wait the library makes (`threading.TIMEOUT_MAX` is far above it)."""

WrongType = Callable[[str, str, str], FieldError]


def text(value: Any, field: str, *, max_length: int = MAX_TEXT_LENGTH) -> str:
    """Return `value` if it is a non-blank `str` of sane length, else raise naming `field`."""
    if not isinstance(value, str):
        raise FieldTypeError(field, "type", f"must be a str, not {type(value).__name__}")
    if not value.strip():
        raise FieldValueError(field, "blank", "must not be empty")
    if len(value) > max_length:
        raise FieldValueError(
            field, "too_long", f"is {len(value)} characters long; the limit is {max_length}"
        )
    return value


def number(
    value: Any,
    field: str,
    *,
    positive: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
    wrong_type: WrongType = FieldTypeError,
) -> float:
    """Return `value` as a finite float (bools refused), else raise naming `field`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise wrong_type(field, "type", f"must be an int or float, not {type(value).__name__}")
    try:
        result = float(value)
    except OverflowError:  # an int too large for a float: beyond any bound, or simply not finite
        result = math.inf if value > 0 else -math.inf
    if math.isnan(result):
        raise _refused(field, "not_finite", "must be finite", value)
    if positive and result <= 0:
        raise _refused(field, "too_small", "must be > 0", value)
    if minimum is not None and maximum is not None and not minimum <= result <= maximum:
        code = "too_small" if result < minimum else "too_large"
        raise _refused(field, code, f"must be within [{minimum:.10g}, {maximum:.10g}]", value)
    if minimum is not None and result < minimum:
        raise _refused(field, "too_small", f"must be >= {minimum:.10g}", value)
    if maximum is not None and result > maximum:
        raise _refused(field, "too_large", f"must be <= {maximum:.10g}", value)
    if math.isinf(result):
        raise _refused(field, "not_finite", "must be finite", value)
    return result


def _refused(field: str, code: str, rule: str, value: object) -> FieldValueError:
    return FieldValueError(field, code, f"{rule}, got {quote(value)}")


def duration(
    value: Any,
    field: str,
    *,
    positive: bool = True,
    unit: float = 1.0,
    wrong_type: WrongType = FieldTypeError,
) -> float:
    """A finite duration in (0, one year] (or [0, ...] unless `positive`), counted in `unit` seconds."""
    limit = MAX_DURATION_SECS / unit
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > limit:
        unit_name = "s" if unit == 1.0 else "ms" if unit == 0.001 else f"x {unit:g} s"
        raise _refused(field, "too_large", f"must be at most one year ({limit:.0f} {unit_name})", value)
    return number(value, field, positive=positive, minimum=None if positive else 0, wrong_type=wrong_type)


def integer(value: Any, field: str, *, minimum: int | None = None, wrong_type: WrongType = FieldTypeError) -> int:
    """Return `value` if it is an int (bools refused) at or above `minimum`, else raise naming `field`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise wrong_type(field, "type", f"must be an int, not {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise FieldValueError(field, "too_small", f"must be >= {minimum}, got {quote(value)}")
    return value


def flag(value: Any, field: str, *, wrong_type: WrongType = FieldTypeError) -> bool:
    """Return `value` if it is a real bool, else raise naming `field`."""
    if not isinstance(value, bool):
        raise wrong_type(field, "type", f"must be a bool, not {type(value).__name__}")
    return value

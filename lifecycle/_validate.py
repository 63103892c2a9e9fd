"""Small argument checks shared by the public entry points; each names the offending field."""

from __future__ import annotations

import math
from typing import Any

MAX_TEXT_LENGTH = 256
"""Longest accepted service name, version or id; longer text is almost always a bug."""


def text(value: Any, field: str, *, max_length: int = MAX_TEXT_LENGTH) -> str:
    """Return `value` if it is a non-blank `str` of sane length, else raise naming `field`."""
    if not isinstance(value, str):
        raise TypeError(f"{field} must be a str, not {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{field} must not be empty")
    if len(value) > max_length:
        raise ValueError(f"{field} is {len(value)} characters long; the limit is {max_length}")
    return value


def number(value: Any, field: str, *, positive: bool = False, minimum: float | None = None) -> float:
    """Return `value` as a finite float (bools refused), else raise TypeError/ValueError naming `field`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{field} must be an int or float, not {type(value).__name__}")
    try:
        result = float(value)
    except OverflowError:  # an int too large for a float
        result = math.inf
    if not math.isfinite(result):
        raise ValueError(f"{field} must be finite, got {value!r}")
    if positive and result <= 0:
        raise ValueError(f"{field} must be > 0, got {value!r}")
    if minimum is not None and result < minimum:
        raise ValueError(f"{field} must be >= {minimum}, got {value!r}")
    return result


def integer(value: Any, field: str, *, minimum: int | None = None) -> int:
    """Return `value` if it is an int (bools refused) at or above `minimum`, else raise naming `field`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{field} must be an int, not {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{field} must be >= {minimum}, got {value!r}")
    return value


def flag(value: Any, field: str) -> bool:
    """Return `value` if it is a real bool, else raise TypeError naming `field`."""
    if not isinstance(value, bool):
        raise TypeError(f"{field} must be a bool, not {type(value).__name__}")
    return value

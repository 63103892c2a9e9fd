"""How error messages repeat a caller's value: shortened, so a huge id or path cannot flood a log."""

from __future__ import annotations

QUOTED_LENGTH = 80
"""How much of a caller's value (an id, a name, a path) an error message repeats."""


def shorten(text: str) -> str:
    """`text` cut to `QUOTED_LENGTH` characters, then "..." when it was longer."""
    return text if len(text) <= QUOTED_LENGTH else text[:QUOTED_LENGTH] + "..."


def quote(value: object) -> str:
    """`repr(value)`, a str cut to `QUOTED_LENGTH` characters (then "..."), anything else to about as much."""
    if isinstance(value, str):
        return repr(shorten(value))
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"<an int of {value.bit_length()} bits>"  # repr would be slow and long
    text = repr(value)
    return text if len(text) <= QUOTED_LENGTH else text[:QUOTED_LENGTH] + "..."

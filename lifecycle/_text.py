"""How error messages repeat a caller's value: shortened, so a huge id or path cannot flood a log, and with
the credentials of a URL masked, so a password never reaches a message."""

from __future__ import annotations

import logging
import re

QUOTED_LENGTH = 80
"""How much of a caller's value (an id, a name, a path) an error message repeats."""


def shorten(text: str) -> str:
    """`text` cut to `QUOTED_LENGTH` characters, then "..." when it was longer."""
    return text if len(text) <= QUOTED_LENGTH else text[:QUOTED_LENGTH] + "..."


def quote(value: object) -> str:
    """`repr(value)`, a str cut to `QUOTED_LENGTH` characters (then "...") with a URL's credentials masked."""
    if isinstance(value, str):
        return repr(shorten(mask_credentials(value)))
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"<an int of {value.bit_length()} bits>"  # repr would be slow and long
    text = repr(value)
    return text if len(text) <= QUOTED_LENGTH else text[:QUOTED_LENGTH] + "..."


MASK = "***"
"""What stands for a password (or a bare token) in every message the library writes."""

# scheme://userinfo@ in free text. A user name alone ends at the authority; with a colon the
# userinfo runs to the token's last "@", so a password holding "@" or an unencoded "/" is still
# masked whole (a URL with "@" in its path and a port is masked too much, never too little).
_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/?#\s@:]*(?::\S*)?)@")


def mask_credentials(text: str) -> str:
    """`text` with the credentials of every ``scheme://user:password@`` in it masked.

    ``ws://user:pw@host/`` reads ``ws://user:***@host/``; a user name alone (``ws://token@host``)
    may be a token, so it is masked whole (``ws://***@host``). Text without such a URL is
    returned unchanged. Every error and log line that shows an address goes through here (or
    `mask_address`), so a password in a URL never reaches a message.
    """
    if "@" not in text:
        return text
    return _URL_USERINFO.sub(lambda match: match["scheme"] + _masked_userinfo(match["userinfo"]) + "@", text)


def mask_address(address: str) -> str:
    """A connector's address as messages show it: a URL through `mask_credentials`, ``user:pw@host`` masked too."""
    if "://" in address:
        return mask_credentials(address)
    userinfo, at, rest = address.rpartition("@")
    if not at or not userinfo or "/" in userinfo:  # a unix path (even one with an "@") keeps its text
        return address
    return f"{_masked_userinfo(userinfo)}@{rest}"


def _masked_userinfo(userinfo: str) -> str:
    user, colon, _ = userinfo.partition(":")
    return f"{user}:{MASK}" if colon else MASK


class MaskedCredentials(logging.Filter):
    """Masks a URL's credentials in every line of the "lifecycle" logger, traceback included (others' errors too)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_credentials(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:  # formatters print exc_text rather than format exc_info again
            trace = logging.Formatter().formatException(record.exc_info)
            masked = mask_credentials(trace)
            if masked != trace:
                record.exc_text = masked
        return True

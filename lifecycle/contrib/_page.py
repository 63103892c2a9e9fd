"""The status page's files, shipped inside the package: one HTML page, its stylesheet and its script.

They hold no data (the script fetches `<prefix>/status`), so they are the same bytes for
everyone; they are read once and kept.
"""

from __future__ import annotations

import functools
from importlib import resources

__all__ = ["ASSETS", "CONTENT_SECURITY_POLICY", "read"]

ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "status.css": "text/css; charset=utf-8",
    "status.js": "text/javascript; charset=utf-8",
}
"""File name -> media type; the only files served."""

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""Only the page's own script and stylesheet run, it talks only to its own server, and no form
ever submits (the token form is handled by the script, so a token never lands in a URL)."""


@functools.cache
def read(name: str) -> bytes:
    """The bytes of one of `ASSETS`; KeyError for any other name."""
    if name not in ASSETS:
        raise KeyError(name)
    return resources.files(__package__).joinpath("status_page", name).read_bytes()

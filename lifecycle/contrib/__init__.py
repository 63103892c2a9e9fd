"""Integrations with the frameworks lifecycle's users run: Flask, Django, and the shared HTTP views.

Each integration is imported on its own (`lifecycle.contrib.flask`, `lifecycle.contrib.django`)
and needs its framework installed (`pip install 'service-lifecycle[flask]'` or `'service-lifecycle[django]'`).
"""

from __future__ import annotations

from ._http import bearer_token_valid
from ._process import start_watching
from ._settings import ConfigurationError

__all__ = ["ConfigurationError", "bearer_token_valid", "start_watching"]

"""`RedisRegistry`'s calls for many services at once: heartbeats and restores, a script per batch, batches pipelined.

For a process that speaks for many services (a gateway relaying their heartbeats, a process
registering again what a data loss took): one round trip per few thousand services where the
one-service calls take one each.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._redis_client import ScriptClient, run_together
from ._redis_codec import _beaten, _encode, _own_timeout, _text
from .events import LifecycleEvent
from .fleet import check_services
from .model import ExtensionService, ServiceStatus
from .registry import _not_found

_Events = list[LifecycleEvent]
_Beaten = tuple[ServiceStatus | None, _Events]


class ManyAtOnce:
    """`beat_many` and `restore_many` of a one-partition `RedisRegistry` (mixed in; it sets `_calls`)."""

    _calls: ScriptClient

    def beat_many(self, ids: Sequence[str], timeout: float | None = None) -> list[_Beaten]:
        """Heartbeats for many services in one round trip; `beat`'s answer for each, in order.

        One script beats up to `BATCH` services (atomic as a whole; the batch is not a transaction).
        A service not registered answers (None, []). For a process that relays many services'
        heartbeats (a gateway, a sidecar): the manager's own calls take one service at a time.
        """
        for id in ids:
            if not isinstance(id, str):
                raise _not_found(id)
        return beat_parts([(self._calls, ids)], timeout)[0]

    def restore_many(self, services: Sequence[ExtensionService], timeout: float) -> list[bool]:
        """`restore` for many services in one round trip: each registered RUNNING with a full deadline where missing.

        True for each service this call registered; False where its id or name was already
        there. One script restores up to `BATCH` services; unlike `restore`, a batch re-sent after
        a lost reply answers False for what its first run restored (the services are there either way).
        """
        return restore_parts([(self._calls, check_services(services))], timeout)[0]


def _plain_answers() -> dict[Any, _Beaten]:
    """A plain beat's code (as bytes and as text) and its answer: the prior status (None: missing), no events."""
    answers: dict[Any, _Beaten] = {}
    for text, status in [(s.value, s) for s in ServiceStatus] + [("missing", None)]:
        answers[text] = answers[text.encode()] = (status, [])
    return answers


# Shared by every answer of its code: a relay's pass over a million services decodes no text and
# builds no tuple per beat (the status lookup alone was a fifth of the relay's CPU). Never mutated.
_PLAIN = _plain_answers()
_NO_ANSWER: _Beaten = (None, [])  # not a plain code: 'revive', answered by REVIVE


def beat_parts(parts: Sequence[tuple[ScriptClient, Sequence[str]]], timeout: float | None) -> list[list[_Beaten]]:
    """`beat_many` over several parts' ids in one pipeline (then one more for the services to revive, if any)."""
    jobs = [calls.job(calls.beats[1], ids, timeout) for calls, ids in parts]
    answers: list[list[_Beaten]] = []
    for (calls, ids), replies in zip(parts, run_together(jobs), strict=True):
        codes = [code for reply in replies for code in reply]
        out = [_PLAIN.get(code) or _NO_ANSWER for code in codes]
        revive = [i for i, answer in enumerate(out) if answer is _NO_ANSWER]  # rare: ERROR or RECONNECTING
        if revive:  # such a service comes back through REVIVE, with its events
            for i, reply in zip(revive, calls.pipelined("REVIVE", [ids[i] for i in revive], timeout), strict=True):
                out[i] = _beaten(reply)
        answers.append(out)
    return answers


def restore_parts(parts: Sequence[tuple[ScriptClient, Sequence[ExtensionService]]], timeout: float
                  ) -> list[list[bool]]:
    """`restore_many` over several parts' services (checked by the caller) in one pipeline."""
    jobs = []
    for calls, services in parts:
        args: list[str] = []
        for service in services:
            args += (service.id, _encode(service), service.name, _own_timeout(service))
        jobs.append(calls.job("RESTORE_MANY", args, timeout, 4))
    return [[_text(answer) == "restored" for reply in replies for answer in reply] for replies in run_together(jobs)]

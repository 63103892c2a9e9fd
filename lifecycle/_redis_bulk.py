"""`RedisRegistry`'s calls for many services at once: heartbeats and restores, a script per batch, batches pipelined.

For a process that speaks for many services (a gateway relaying their heartbeats, a process
registering again what a data loss took): one round trip per few thousand services where the
one-service calls take one each.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._redis_client import ScriptClient
from ._redis_codec import _beaten, _encode, _own_timeout, _text
from .events import LifecycleEvent
from .fleet import check_services
from .model import ExtensionService, ServiceStatus
from .registry import _not_found

_Events = list[LifecycleEvent]


class ManyAtOnce:
    """`beat_many` and `restore_many` of a one-partition `RedisRegistry` (mixed in; it sets `_calls`)."""

    _calls: ScriptClient

    def beat_many(self, ids: Sequence[str], timeout: float | None = None
                  ) -> list[tuple[ServiceStatus | None, _Events]]:
        """Heartbeats for many services in one round trip; `beat`'s answer for each, in order.

        One script beats up to `BATCH` services (atomic as a whole; the batch is not a transaction).
        A service not registered answers (None, []). For a process that relays many services'
        heartbeats (a gateway, a sidecar): the manager's own calls take one service at a time.
        """
        for id in ids:
            if not isinstance(id, str):
                raise _not_found(id)
        replies: list[Any] = [[code] for code in self._calls.batched(self._calls.beats[1], ids, timeout)]
        revive = [i for i, reply in enumerate(replies) if _text(reply[0]) == "revive"]
        if revive:  # a second round trip for the services to bring back, if any
            revived = self._calls.pipelined("REVIVE", [ids[i] for i in revive], timeout)
            for i, reply in zip(revive, revived, strict=True):
                replies[i] = reply
        return [_beaten(reply) for reply in replies]

    def restore_many(self, services: Sequence[ExtensionService], timeout: float) -> list[bool]:
        """`restore` for many services in one round trip: each registered RUNNING with a full deadline where missing.

        True for each service this call registered; False where its id or name was already
        there. One script restores up to `BATCH` services; unlike `restore`, a batch re-sent after
        a lost reply answers False for what its first run restored (the services are there either way).
        """
        args: list[str] = []
        for service in check_services(services):
            args += (service.id, _encode(service), service.name, _own_timeout(service))
        return [_text(answer) == "restored" for answer in self._calls.batched("RESTORE_MANY", args, timeout, 4)]


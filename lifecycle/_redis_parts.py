"""A `RedisRegistry` spread over several hash tags: one part (a one-partition `RedisRegistry`) per partition.

`RedisRegistry(client, partitions=P)` with P > 1 builds a `PartitionedRedis`: the routing is
`lifecycle._partitions.Partitioned`; here are the parts' hash tags, the names' claims (a hash in
each part's slot, changed by small compare-and-set scripts) and the fleet's members (who leads how
many partitions, engine/spread.py). The namespace's own tag holds only the recorded partition count
(``lifecycle:{<namespace>}:partitions``) and the members (``lifecycle:{<namespace>}:members``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from redis.cluster import RedisCluster
from redis.crc import key_slot

from ._logwait import LogWaiters
from ._partitions import _SLICE_MAX, Partitioned, check_partitions
from ._redis_bulk import beat_parts, restore_parts
from ._redis_client import BATCH, Client, ScriptClient
from ._redis_codec import _entry_id, _rows, _rows_after, _text
from .events import LifecycleEvent
from .fleet import Lease, Members
from .model import ExtensionService, ServiceStatus
from .redis import RedisRegistry

_Rows = list[tuple[str, LifecycleEvent]]
_Events = list[LifecycleEvent]

__all__ = ["PartitionedRedis"]


class PartitionedRedis(Partitioned, RedisRegistry):
    """A `RedisRegistry` of `partitions` > 1: one part (a one-partition registry) per hash tag, calls routed.

    The namespace's own tag keeps only the recorded partition count and the members; part k lives under
    ``lifecycle:{<namespace>/p<k>...}:``, a tag chosen so the parts' slots lie evenly over the
    16384 slots (so over the masters of a cluster whose slots are split evenly).
    """

    def __init__(self, client: Client, *, namespace: str = "lifecycle", partitions: int = 1,
                 **options: Any) -> None:
        count = check_partitions(partitions)
        super().__init__(client, namespace=namespace, **options)
        self.partitions = self._calls.partitions = count
        self._parts = []
        for k in range(count):
            part = RedisRegistry(client, namespace=_spread_tag(self.namespace, k, count), **options)
            part._calls.parent = self._calls  # the namespace's record is checked before any part's call
            self._parts.append(part)
        self._claims = [_RedisClaims(part._calls) for part in self._parts]
        self._logs = [part.keys["events"] for part in self._parts]
        self._members = self.keys["partitions"].rpartition(":")[0] + ":members"
        self._waiters: LogWaiters | None = None  # see _log_waiters

    def lease(self, owner: str, ttl: float, *, partition: int = 0, polite: bool = False) -> Lease:
        """Take or renew the lease of `partition`; a part whose data was lost has the namespace's count recorded again.

        The record lives in the namespace's own tag, checked once per client: a part that made a new
        generation marker (its keys were gone) has it checked, and so written again, on the next call.
        """
        lease = super().lease(owner, ttl, partition=partition, polite=polite)
        self._calls.recheck_record(not self._parts[partition]._calls.recorded)
        return lease

    def _beat_parts(self, ids: dict[int, list[str]], timeout: float | None
                    ) -> dict[int, list[tuple[ServiceStatus | None, _Events]]]:
        """Every partition's heartbeats in one pipeline: a cluster's masters take theirs at once."""
        answers = beat_parts([(self._parts[p]._calls, part_ids) for p, part_ids in ids.items()], timeout)
        return dict(zip(ids, answers, strict=True))

    def _restore_parts(self, services: dict[int, list[ExtensionService]], timeout: float) -> dict[int, list[bool]]:
        """Every partition's restores in one pipeline: a cluster's masters take theirs at once."""
        answers = restore_parts([(self._parts[p]._calls, part) for p, part in services.items()], timeout)
        return dict(zip(services, answers, strict=True))

    def members(self, owner: str, ttl: float, leads: int, standing: float = 0.0) -> Members:
        """`owner` live for `ttl` s more (0: gone), leading `leads`; the live members and the fewest others lead.

        One hash in the namespace's own tag (``lifecycle:{<namespace>}:members``: member -> "until
        since last leads", milliseconds on the server's clock), pruned of the lapsed by each call,
        and gone when nobody calls. A member is settled once it refreshed `standing` after it came.
        """
        live, fewest, settled = self._calls.eval(_MEMBERS, [self._members],
                                                 [owner, *(str(max(0, round(t * 1000))) for t in (ttl, standing)),
                                                  str(leads)])
        return Members(int(live), _count(fewest), _count(settled))

    def last_event_id(self) -> str:
        """Every partition's newest entry id ("0-0": an empty log), joined by commas: one pipelined round trip.

        A cluster's pipeline sends each node the reads of the partitions it serves.
        """
        def newest(client: Client) -> list[Any]:
            with client.pipeline(transaction=False) as pipe:
                for key in self._logs:
                    pipe.xrevrange(key, count=1)
                return list(pipe.execute())

        return ",".join(_text(found[0][0]) if found else "0-0" for found in self._calls.command(newest))

    def _read_each(self, cursor: list[str], count: int) -> list[_Rows]:
        """Each partition's entries after `cursor` in one pipeline, without waiting (a cluster's nodes read at once).

        On a Redis Cluster, where no one XREAD may name every partition's stream, this is how an
        idle reader polls: one round trip to each node, not one per partition in turn.
        """
        starts = [_entry_id(after) for after in cursor]

        def read(client: Client) -> list[Any]:
            with client.pipeline(transaction=False) as pipe:
                for key, start in zip(self._logs, starts, strict=True):
                    pipe.xrange(key, start, "+", count + 1)
                return list(pipe.execute())

        return [_rows_after(reply, start, count) for reply, start in zip(self._calls.command(read), starts,
                                                                          strict=True)]

    def _log_waiters(self) -> LogWaiters | None:
        """On a Redis Cluster (where `_read_together` cannot): a thread blocked on each partition's log at once.

        Made on first use and kept: an idle reader keeps one such thread per partition, each
        blocked on the server a slice at a time.
        """
        if self._waiters is None:
            parts = self._parts
            self._waiters = LogWaiters(self.partitions, lambda p, after, block: bool(
                parts[p].read_events(after, block=block, count=1)), _SLICE_MAX)
        return self._waiters

    def _read_together(self, cursor: list[str], count: int, block: float | None) -> list[_Rows] | None:
        """Every partition's log in one XREAD of all the streams (an idle poll is one call, not one per partition).

        Not on a Redis Cluster: the streams lie in different slots, and a command's keys must share
        one (redis-py's cluster client refuses a multi-key XREAD across slots), so there each
        partition's log is read on its own (None). A wait longer than `_SLICE_MAX` is made of
        several, each below any sane socket timeout.
        """
        streams = dict(zip(self._logs, cursor, strict=True))
        turns, wait = 1, None
        if block is not None:
            span = self._calls.block_within(min(max(block, 0.001), _SLICE_MAX))
            turns, wait = math.ceil(block / span), max(1, round(span * 1000))

        def read(client: Client) -> Any:
            return False if isinstance(client, RedisCluster) else client.xread(streams, count=count, block=wait)

        for _ in range(max(1, turns)):
            reply = self._calls.command(read)
            if reply is False:
                return None
            if reply:
                at = {key: p for p, key in enumerate(self._logs)}
                found: list[_Rows] = [[] for _ in self._logs]
                for stream, entries in reply.items() if isinstance(reply, dict) else reply:
                    found[at[_text(stream)]] = _rows([(stream, entries)])
                return found
        return [[] for _ in self._logs]

    def __repr__(self) -> str:
        host, port = self._calls.where
        return f"<RedisRegistry {host}:{port} namespace={self.namespace!r} partitions={self.partitions}>"


class _RedisClaims:
    """A part's claims on names (`NameClaims`): one hash in the part's slot, changed by compare-and-set scripts."""

    def __init__(self, calls: ScriptClient) -> None:
        self._calls = calls
        self._key = calls.keys["claims"] = calls.keys["status"].rpartition(":")[0] + ":claims"

    def claim(self, name: str, id: str, expected: str = "") -> tuple[str, bool]:
        holder, fresh = self._calls.eval(_CLAIM, [self._key], [name, id, expected])
        return _text(holder), fresh == 1

    def release(self, name: str, id: str) -> None:
        self._calls.eval(_UNCLAIM, [self._key], [name, id])

    def holder(self, name: str) -> str | None:
        found = self._calls.command(lambda client: client.hget(self._key, name))
        return None if found is None else _text(found)

    def claim_free(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        held: list[bool] = []
        for k in range(0, len(pairs), BATCH):
            reply = self._calls.eval(_CLAIM_FREE, [self._key], [item for pair in pairs[k:k + BATCH] for item in pair])
            held += [answer == 1 for answer in reply]
        return held

    def clear(self) -> None:
        self._calls.command(lambda client: client.delete(self._key))


_CLAIM = """local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur == ARGV[2] then return {cur, 0} end
if (not cur) or cur == ARGV[3] then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) return {ARGV[2], 1} end
return {cur, 0}"""
_CLAIM_FREE = """local held = {}
for i = 1, #ARGV, 2 do
  redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1])
  held[#held + 1] = redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] and 1 or 0
end
return held"""
_UNCLAIM = """if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0"""
# The members (see `PartitionedRedis.members`): ARGV owner, ttl_ms (0: it leaves), standing_ms, leads; -1: None.
_MEMBERS = """local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local owner, ttl, standing = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local all = redis.call('HGETALL', KEYS[1])
local live, fewest, settled, since = 0, -1, -1, now
for i = 1, #all, 2 do
  local till, from, last, leads = string.match(all[i + 1], '^(%d+) (%d+) (%d+) (%d+)$')
  if (not till) or tonumber(till) <= now then redis.call('HDEL', KEYS[1], all[i])
  elseif all[i] == owner then since = tonumber(from)
  else
    live, leads = live + 1, tonumber(leads)
    if fewest < 0 or leads < fewest then fewest = leads end
    if tonumber(last) - tonumber(from) >= standing and (settled < 0 or leads < settled) then settled = leads end
  end
end
if ttl > 0 then
  live = live + 1
  redis.call('HSET', KEYS[1], owner, string.format('%d %d %d %d', now + ttl, since, now, tonumber(ARGV[4])))
  if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
else redis.call('HDEL', KEYS[1], owner) end
return {live, fewest, settled}"""
_SLOTS = 16384


def _count(value: Any) -> int | None:
    return None if int(value) < 0 else int(value)


def _spread_tag(namespace: str, k: int, partitions: int) -> str:
    """Part k's hash tag ``<namespace>/p<k>``, suffixed if need be so its slot is in the k-th of P even ranges."""
    low, high = k * _SLOTS // partitions, (k + 1) * _SLOTS // partitions
    for j in range(64 * partitions):
        tag = f"{namespace}/p{k}" if j == 0 else f"{namespace}/p{k}.{j}"
        if low <= key_slot(tag.encode()) < high:
            return tag
    return f"{namespace}/p{k}"  # pragma: no cover - a range of 16 slots or more is always hit within the tries

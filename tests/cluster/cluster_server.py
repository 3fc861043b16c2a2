"""A throwaway local Redis Cluster for the cluster tests: 3 masters, 3 replicas.

Six ``redis-server --cluster-enabled yes`` processes on free ports of 127.0.0.1 (each
port below 55535, so that its cluster bus port, port + 10000, is a valid port too),
joined by ``redis-cli --cluster create ... --cluster-replicas 1``. Starting blocks
(processes, then polling ``CLUSTER INFO`` until ``cluster_state:ok``): the session
fixture starts it once, outside any event loop.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["RedisCluster"]

_NODES = 6
_BUS_OFFSET = 10_000
_START_TIMEOUT_S = 20.0


def _is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_ports(count: int) -> list[int]:
    """``count`` ports whose bus ports (port + 10000) are free too."""
    found: list[int] = []
    candidates = random.sample(range(20_000, 45_000), 2000)
    for port in candidates:
        if port in found or port + _BUS_OFFSET in found:
            continue
        if _is_free(port) and _is_free(port + _BUS_OFFSET):
            found.append(port)
            if len(found) == count:
                return found
    raise RuntimeError("no free ports for a local Redis Cluster")


def _command(port: int, *arguments: str) -> str:
    """One command through redis-cli (blocking; the fixture runs outside a loop)."""
    done = subprocess.run(
        ["redis-cli", "-p", str(port), *arguments],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return done.stdout


class RedisCluster:
    """Owns six redis-server processes forming one cluster; ``stop()`` ends them all."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None or shutil.which("redis-cli") is None:
            raise RuntimeError("redis-server/redis-cli are not installed (apt-get install redis)")
        self.binary = binary
        self.directory = directory
        self.ports = _free_ports(_NODES)
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        """A URL of one node (any node works: the client finds the others)."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self) -> None:
        for port in self.ports:
            node_dir = self.directory / str(port)
            node_dir.mkdir(parents=True, exist_ok=True)
            self.processes.append(
                subprocess.Popen(
                    [
                        self.binary,
                        "--port", str(port),
                        "--bind", "127.0.0.1",
                        "--dir", str(node_dir),
                        "--cluster-enabled", "yes",
                        "--cluster-config-file", "nodes.conf",
                        "--cluster-node-timeout", "2000",
                        # A new replica's first sync starts at once, not after 5 s.
                        "--repl-diskless-sync-delay", "0",
                        "--save", "",
                        "--appendonly", "no",
                        "--logfile", str(node_dir / "redis.log"),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )  # fmt: skip
        deadline = time.monotonic() + _START_TIMEOUT_S
        for port in self.ports:
            while "PONG" not in _command(port, "PING"):
                self._check_alive(deadline)
        nodes = [f"127.0.0.1:{port}" for port in self.ports]
        created = subprocess.run(
            ["redis-cli", "--cluster", "create", *nodes, "--cluster-replicas", "1",
             "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=_START_TIMEOUT_S,
            check=False,
        )  # fmt: skip
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {created.stdout[-500:]}")
        for port in self.ports:
            self.wait_ok(port, deadline)
        # A failover waits for the replica to have its master's data: let every
        # replica finish its first sync now.
        for port in self.replica_ports():
            while "master_link_status:up" not in _command(port, "INFO", "replication"):
                self._check_alive(deadline)

    def wait_ok(self, port: int, deadline: float) -> None:
        """Poll ``port`` until it reports ``cluster_state:ok``, knows all six nodes and
        sees three of them as replicas (a failover is refused by masters that still
        take the replica for a master)."""
        while True:
            info = _command(port, "CLUSTER", "INFO")
            if "cluster_state:ok" in info and f"cluster_known_nodes:{_NODES}" in info:
                nodes = _command(port, "CLUSTER", "NODES").splitlines()
                roles = [line.split()[2] for line in nodes]
                if sum("slave" in role for role in roles) == _NODES // 2:
                    return
            self._check_alive(deadline)

    def _check_alive(self, deadline: float) -> None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the local Redis Cluster did not settle, see {self.directory}")
        for process in self.processes:
            if process.poll() is not None:
                raise RuntimeError(f"a cluster node exited early, see {self.directory}")
        time.sleep(0.05)  # polling child processes, outside any event loop

    def replica_ports(self) -> list[int]:
        """The ports of the nodes that are replicas right now."""
        return [
            port for port in self.ports if "role:slave" in _command(port, "INFO", "replication")
        ]

    def failover(self, replica_port: int) -> None:
        """``CLUSTER FAILOVER`` on a replica, then wait until it is a master (blocking)."""
        answer = _command(replica_port, "CLUSTER", "FAILOVER")
        if "OK" not in answer:
            raise RuntimeError(f"CLUSTER FAILOVER refused: {answer.strip()}")
        deadline = time.monotonic() + _START_TIMEOUT_S
        while "role:master" not in _command(replica_port, "INFO", "replication"):
            self._check_alive(deadline)
        for port in self.ports:
            self.wait_ok(port, deadline)

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()

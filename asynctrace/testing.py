"""Throwaway ``redis-server``s for tests and benchmarks: free ports, own directory.

Start one per test session instead of sharing a machine's Redis: outage tests can
stop and restart it, and nothing it holds outlives the run.

    server = RedisServer()
    server.start()
    asynctrace.configure(service="orders", redis_url=server.url)
    ...
    server.stop()

``RedisClusterServer`` does the same for a local Redis Cluster of six nodes.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["RedisClusterServer", "RedisServer", "free_port"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """Owns one ``redis-server`` process on 127.0.0.1, persisting nothing.

    ``directory`` holds its log; without one, a temporary directory is made and
    removed by ``stop()``. ``stop()`` and ``start()`` keep the port, so an outage
    can be staged. Raises ``RuntimeError`` when the binary is missing or the server
    does not answer ``PING`` within 10 s. Starting and stopping block: from async
    code use ``start_async()`` / ``stop_async()``.
    """

    def __init__(self, directory: Path | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        self._temporary = (
            tempfile.TemporaryDirectory(prefix="asynctrace-redis-") if directory is None else None
        )
        self.directory = Path(self._temporary.name) if self._temporary else Path(directory or ".")
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def version(self) -> str:
        """What ``redis-server --version`` prints."""
        out = subprocess.run([self.binary, "--version"], capture_output=True, text=True)
        return out.stdout.strip()

    def start(self) -> None:
        """Start the server (no-op when it runs) and wait until it answers PING."""
        if self.process is not None and self.process.poll() is None:
            return
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--appendonly",
                "no",
                "--logfile",
                str(self.directory / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited early, see {self.directory}/redis.log")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.01)  # polling a child process; async callers use start_async()
        raise RuntimeError("redis-server did not answer PING within 10 s")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s); keep the port for start()."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def close(self) -> None:
        """Stop the server and remove its temporary directory, if it made one."""
        self.stop()
        if self._temporary is not None:
            self._temporary.cleanup()

    async def start_async(self) -> None:
        """``start()`` in a worker thread, so the event loop is not blocked."""
        await asyncio.to_thread(self.start)

    async def stop_async(self) -> None:
        """``stop()`` in a worker thread, so the event loop is not blocked."""
        await asyncio.to_thread(self.stop)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


_NODES = 6
_BUS_OFFSET = 10_000
_START_TIMEOUT_S = 20.0


def _is_free_port(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_cluster_ports(count: int) -> list[int]:
    """``count`` ports whose bus ports (port + 10000) are free too.

    All below Linux's default ephemeral range (32768 and up): an ephemeral port, which
    any connection of another process takes without asking, could otherwise take a
    node's port or bus port between this check and the node's start."""
    found: list[int] = []
    candidates = random.sample(range(12_000, 22_700), 2000)
    for port in candidates:
        if port in found or port + _BUS_OFFSET in found or port - _BUS_OFFSET in found:
            continue
        if _is_free_port(port) and _is_free_port(port + _BUS_OFFSET):
            found.append(port)
            if len(found) == count:
                return found
    raise RuntimeError("no free ports for a local Redis Cluster")


def _cli(port: int, *arguments: str) -> str:
    """One command through redis-cli (blocking: callers run outside an event loop)."""
    done = subprocess.run(
        ["redis-cli", "-p", str(port), *arguments],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return done.stdout


class RedisClusterServer:
    """Owns six redis-server processes forming one local Redis Cluster: 3 masters,
    3 replicas, on free ports of 127.0.0.1 below 55535 (each node's cluster bus port
    is port + 10000). ``start()`` joins them with ``redis-cli --cluster create`` and
    waits until every node reports ``cluster_state:ok`` and every replica has synced;
    ``stop()`` ends them all. Starting, ``failover()`` and stopping block: call them
    outside an event loop, or through ``asyncio.to_thread``.
    """

    def __init__(self, directory: Path | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None or shutil.which("redis-cli") is None:
            raise RuntimeError("redis-server/redis-cli are not installed (apt-get install redis)")
        self.binary = binary
        self._temporary = (
            tempfile.TemporaryDirectory(prefix="asynctrace-cluster-") if directory is None else None
        )
        self.directory = Path(self._temporary.name) if self._temporary else Path(directory or ".")
        self.ports = _free_cluster_ports(_NODES)
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        """A URL of one node (any node works: the client finds the others)."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self) -> None:
        """Start the six nodes, join them, wait until the cluster is ok (at most 20 s).

        Raises ``RuntimeError`` (with every node stopped) when it does not come up.
        """
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
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
            while "PONG" not in _cli(port, "PING"):
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
            while "master_link_status:up" not in _cli(port, "INFO", "replication"):
                self._check_alive(deadline)

    def wait_ok(self, port: int, deadline: float) -> None:
        """Poll ``port`` until it reports ``cluster_state:ok``, knows all six nodes and
        sees three of them as replicas (a failover is refused by masters that still
        take the replica for a master)."""
        while True:
            info = _cli(port, "CLUSTER", "INFO")
            if "cluster_state:ok" in info and f"cluster_known_nodes:{_NODES}" in info:
                nodes = _cli(port, "CLUSTER", "NODES").splitlines()
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
        return [port for port in self.ports if "role:slave" in _cli(port, "INFO", "replication")]

    def failover(self, replica_port: int) -> None:
        """``CLUSTER FAILOVER`` on a replica, then wait until it is a master (blocking)."""
        answer = _cli(replica_port, "CLUSTER", "FAILOVER")
        if "OK" not in answer:
            raise RuntimeError(f"CLUSTER FAILOVER refused: {answer.strip()}")
        deadline = time.monotonic() + _START_TIMEOUT_S
        while "role:master" not in _cli(replica_port, "INFO", "replication"):
            self._check_alive(deadline)
        for port in self.ports:
            self.wait_ok(port, deadline)

    def stop(self) -> None:
        """End every node (SIGTERM, then SIGKILL after 10 s)."""
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()

    def close(self) -> None:
        """Stop every node and remove the temporary directory, if it made one."""
        self.stop()
        if self._temporary is not None:
            self._temporary.cleanup()
            self._temporary = None

    def __enter__(self) -> RedisClusterServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

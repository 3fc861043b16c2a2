"""A throwaway ``redis-server`` for tests and benchmarks: free port, own directory.

Start one per test session instead of sharing a machine's Redis: outage tests can
stop and restart it, and nothing it holds outlives the run.

    server = RedisServer()
    server.start()
    asynctrace.configure(service="orders", redis_url=server.url)
    ...
    server.stop()
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["RedisServer", "free_port"]


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

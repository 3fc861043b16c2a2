"""Benchmark applications served from child processes, stopped when done."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["ServedApp", "serve_all"]

_ROOT = Path(__file__).resolve().parent.parent


class ServedApp:
    """``python -m benchmarks.apps ARGS`` in a child process, ready once it says so."""

    def __init__(self, *args: str) -> None:
        environment = {**os.environ, "PYTHONPATH": str(_ROOT)}
        self._errors = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.apps", *args],
            cwd=_ROOT,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=self._errors,
            text=True,
        )
        self.args = args

    def _failure(self, what: str) -> RuntimeError:
        self._errors.seek(0)
        tail = self._errors.read().decode(errors="replace").strip().splitlines()[-5:]
        return RuntimeError(f"benchmark app {self.args} {what}: {' | '.join(tail)}")

    def wait_ready(self) -> None:
        assert self.process.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise self._failure(f"exited with {self.process.returncode}")
            ready, _, _ = select.select([self.process.stdout], [], [], 0.1)
            if ready and self.process.stdout.readline().strip() == "ready":
                return
        self.stop()
        raise self._failure("did not start within 30 s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._errors.close()


def serve_all(*commands: tuple[str, ...]) -> list[ServedApp]:
    """Start every app at once (they import in parallel), then wait until all serve."""
    apps = [ServedApp(*args) for args in commands]
    try:
        for app in apps:
            app.wait_ready()
    except BaseException:
        for app in apps:
            app.stop()
        raise
    return apps

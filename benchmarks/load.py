"""HTTP load from another process: ``wrk`` when it is installed, else an aiohttp loop.

``python -m benchmarks.load URL CONNECTIONS SECONDS`` is the fallback generator: that
many keep-alive connections, each sending its next request when the last answered,
for that long; it prints one JSON line with requests/s and latency percentiles.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from benchmarks.loops import use_loop_from_env

__all__ = ["LoadResult", "choose_generator", "ensure_wrk", "load_rounds", "run_load"]

_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class LoadResult:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    tool: str


def ensure_wrk() -> tuple[str | None, str]:
    """wrk's path (installing Debian's package when we are root), and a note on how."""
    found = shutil.which("wrk")
    if found:
        return found, ""
    if shutil.which("apt-get") is None or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None, "wrk not installed and apt-get not usable: aiohttp load loop used"
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "wrk"]
    # Install from the package lists as they are; refresh them only if that fails.
    for commands in ([install], [["apt-get", "update", "-qq"], install]):
        try:
            for command in commands:
                subprocess.run(
                    command, env=environment, capture_output=True, timeout=600, check=False
                )
        except (OSError, subprocess.TimeoutExpired):
            break
        found = shutil.which("wrk")
        if found:
            return found, "wrk installed from Debian's packages by the benchmark"
    return None, "wrk could not be installed: aiohttp load loop used"


def choose_generator(tool: str) -> tuple[str | None, str]:
    """(wrk's path, or None for the aiohttp loop; a note) for ``Options.load_tool``."""
    if tool == "loop":
        return None, "aiohttp load loop (--load-tool loop)"
    wrk, note = ensure_wrk()
    if wrk is None and tool == "wrk":
        raise RuntimeError(f"--load-tool wrk: {note}")
    return wrk, note


_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _wrk_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if match is None:
        return float("nan")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def _run_wrk(wrk: str, url: str, connections: int, seconds: float) -> LoadResult:
    out = subprocess.run(
        [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", url],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]  # wrk always prints it
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.MULTILINE))
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non_2xx:
        errors += int(non_2xx.group(1))
    return LoadResult(
        rate, _wrk_ms(percentiles.get("50", "")), _wrk_ms(percentiles.get("99", "")), errors, "wrk"
    )


def _run_loop(url: str, connections: int, seconds: float) -> LoadResult:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.load", url, str(connections), str(seconds)],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
        cwd=_ROOT,
    ).stdout
    data = json.loads(out.strip().splitlines()[-1])
    return LoadResult(
        data["requests_per_s"], data["p50_ms"], data["p99_ms"], data["errors"], "aiohttp loop"
    )


def run_load(wrk: str | None, url: str, connections: int, seconds: float) -> LoadResult:
    """Load ``url`` from another process for ``seconds``; wrk if given, else the loop."""
    if wrk is not None:
        return _run_wrk(wrk, url, connections, seconds)
    return _run_loop(url, connections, seconds)


def load_rounds(
    wrk: str | None,
    urls: Mapping[str, str],
    *,
    connections: int,
    seconds: float,
    rounds: int,
    warm_up: bool,
) -> dict[str, list[LoadResult]]:
    """Load each variant's URL for ``seconds``, in interleaved rounds; every result kept.

    With ``warm_up``, each URL first gets one second of load that is not measured.
    """
    from benchmarks.rounds import interleaved

    if warm_up:
        for url in urls.values():
            run_load(wrk, url, connections, 1.0)
    results: dict[str, list[LoadResult]] = {name: [] for name in urls}

    def sampler(name: str) -> Callable[[], float]:
        def sample() -> float:
            result = run_load(wrk, urls[name], connections, seconds)
            results[name].append(result)
            return result.requests_per_s

        return sample

    interleaved({name: sampler(name) for name in urls}, rounds)
    return results


async def _loop(url: str, connections: int, seconds: float) -> dict[str, float]:
    from aiohttp import ClientSession, TCPConnector

    from benchmarks.rounds import percentile

    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker(session: ClientSession) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                async with session.get(url) as response:
                    await response.read()
                    if response.status >= 400:
                        errors += 1
            except OSError:
                errors += 1
                continue
            latencies.append(time.perf_counter() - started)

    async with ClientSession(connector=TCPConnector(limit=connections)) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(connections)))
        elapsed = time.perf_counter() - started
    return {
        "requests_per_s": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 0.5) * 1e3,
        "p99_ms": percentile(latencies, 0.99) * 1e3,
        "errors": errors,
    }


if __name__ == "__main__":
    use_loop_from_env()
    print(json.dumps(asyncio.run(_loop(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))))

"""``python -m benchmarks.instructions [span|middleware|export ...]``: CPU instructions
per operation, counted by valgrind's callgrind.

Timings on a shared host swing with whatever else runs there; an instruction count
is the same on every run. Each case runs twice in a child process under callgrind,
with a short and a long loop (same set-up, ``PYTHONHASHSEED=0``), and the difference
is divided by the extra iterations, so start-up and set-up cancel out. The garbage
collector is paused for the counted loop: where its full collections fall shifts
with everything else on the heap, and one of them is worth thousands of
instructions per iteration, which would blur every comparison. Needs
``valgrind`` (Debian's package); about half a minute per count.

- ``span``: ``async with span("child")`` inside a parent, against the floor span of
  ``span_cost.py``, in a running loop whose export task waits for a batch (no-op
  exporter, a queue large enough never to drop or fill a batch).
- ``middleware``: one request through ``Application._handle`` as in
  ``middleware_cost.py``: bare, empty middleware, the naive in-memory middleware,
  asynctrace for a new trace, with a ``traceparent``, and with a ``traceparent`` and
  a ``tracestate``.
- ``export``: ``RedisExporter``'s encoding of a batch into packed RESP (no socket),
  per span, for traces of one and of four spans; and two parts of it alone, each
  span's JSON (with a local root's index entry) and the aggregates' commands.
- ``http``: the hello-world app of the HTTP scenario serving keep-alive requests over
  loopback from a client in another (uncounted) process: the server's whole work per
  request, socket handling and the response included, which the in-process middleware
  case leaves out; export to a Redis started for the count, in full batches. The app
  is CPU-bound under load, so the ratio of two counts predicts its ratio of
  requests/s. About a minute per count.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["count", "main"]

SHORT, LONG = 200, 2200
_COLLECTED = re.compile(r"Collected : (\d+)")


def _span_case(variant: str, iterations: int) -> None:
    import asynctrace
    from benchmarks.span_cost import _NoOpExporter, floor_span

    async def run() -> None:
        # As in span_cost.py: inside a loop whose export task runs (a batch no run
        # fills, a delay no run reaches), so spans take the request path's hand-off.
        tracer = asynctrace.configure(
            service="bench",
            exporter=_NoOpExporter(),
            max_queue=10**7,
            batch_size=10**7,
            max_delay_s=600,
        )
        await tracer.flush()
        gc.disable()
        if variant == "floor":
            async with floor_span():
                for _ in range(iterations):
                    async with floor_span():
                        pass
        else:
            async with asynctrace.span("parent"):
                for _ in range(iterations):
                    async with asynctrace.span("child"):
                        pass

    asyncio.run(run())


_MIDDLEWARE_HEADERS = {
    "new trace": {},
    "traceparent": {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
    "traceparent + tracestate": {
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "tracestate": "asynctrace=web,other=1",
    },
}


def _middleware_case(variant: str, iterations: int) -> None:
    import asynctrace
    from benchmarks.apps import build_app
    from benchmarks.middleware_cost import BASE_HEADERS, _frozen, _NoOpExporter, _requests

    async def run() -> None:
        # A batch delay no run reaches: the exporter wakes on batch size only, never
        # on how long valgrind made the loop take.
        tracer = asynctrace.configure(service="hello", exporter=_NoOpExporter(), max_delay_s=600)
        headers = {**BASE_HEADERS, **_MIDDLEWARE_HEADERS.get(variant, {})}
        mode = variant if variant in ("bare", "empty", "naive") else "asynctrace"
        app = _frozen(build_app(mode))
        requests = _requests(app, SHORT + iterations, headers)
        for request in requests[:SHORT]:  # warm-up, the same in both runs
            await app._handle(request)
        await tracer.flush()
        gc.disable()
        for request in requests[SHORT:]:
            await app._handle(request)

    asyncio.run(run())


def _export_case(variant: str, iterations: int) -> None:
    from asynctrace.export import redis_exporter
    from asynctrace.export.aggregates import aggregate_commands
    from asynctrace.model import encode_indexed_span, encode_span
    from benchmarks.workload import finished_spans

    # "N": all of a batch's commands; "N, span JSON": only each span's JSON (with the
    # index entry for a local root, as the exporter encodes it); "N, aggregates": only
    # the aggregates' commands. The same 256 spans (made the same way in both runs)
    # go through batch after batch until ``iterations`` spans did.
    per_trace, _, part = variant.partition(", ")
    spans = finished_spans(256, spans_per_trace=int(per_trace))
    exporter = redis_exporter.RedisExporter("redis://127.0.0.1:1")  # never connects
    remaining = iterations
    gc.disable()
    while remaining > 0:
        batch = spans[: min(remaining, len(spans))]
        if part == "span JSON":
            for span in batch:
                if span.is_local_root:
                    encode_indexed_span(span)
                else:
                    encode_span(span)
        elif part == "aggregates":
            aggregate_commands(batch)
        else:
            guarded, slices = exporter._guarded(batch)
            for _ in slices:
                guarded.take_ready()
            guarded.finish()
        remaining -= len(batch)


# The HTTP case's variants: the app's mode in ``apps.py``, and where spans go.
_HTTP_VARIANTS = {
    "bare": ("bare", None),
    "empty middleware": ("empty", None),
    "naive middleware": ("naive", None),
    "middleware(), export dropped": ("asynctrace", "drop"),
    "setup(app), export dropped": ("asynctrace-setup", "drop"),
    "setup(app), export to Redis": ("asynctrace-setup", "redis"),
}
# Keep-alive GETs, each sent when the last one's response ("hello") has arrived.
_HTTP_CLIENT = """
import socket, sys
connection = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
request = b"GET /hello/world HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n\\r\\n"
for _ in range(int(sys.argv[2])):
    connection.sendall(request)
    received = b""
    while not received.endswith(b"hello"):
        chunk = connection.recv(65536)
        if not chunk:
            raise SystemExit("the server closed the connection")
        received += chunk
connection.close()
"""


def _http_case(variant: str, iterations: int) -> None:
    from aiohttp import web

    import asynctrace
    from asynctrace.testing import RedisServer, free_port
    from benchmarks.apps import DropEverything, build_app

    mode, spans_to = _HTTP_VARIANTS[variant]

    async def run(redis_url: str | None) -> None:
        # A batch delay no run reaches: spans go out in full batches, as under load.
        if spans_to == "drop":
            asynctrace.configure(service="hello", exporter=DropEverything(), max_delay_s=600)
        elif spans_to == "redis":
            asynctrace.configure(service="hello", redis_url=redis_url, max_delay_s=600)
        runner = web.AppRunner(build_app(mode), access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        gc.disable()
        client = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _HTTP_CLIENT, str(port), str(iterations)
        )
        if await client.wait() != 0:
            raise RuntimeError(f"the HTTP client failed for {variant}")
        await runner.cleanup()
        await asynctrace.shutdown()

    if spans_to == "redis":
        with RedisServer() as server:
            asyncio.run(run(server.url))
    else:
        asyncio.run(run(None))


CASES: dict[str, tuple[Callable[[str, int], None], Sequence[str], str]] = {
    "span": (_span_case, ("floor", "asynctrace"), "per child span"),
    "middleware": (
        _middleware_case,
        ("bare", "empty", "naive", *_MIDDLEWARE_HEADERS),
        "per request",
    ),
    "export": (
        _export_case,
        ("1", "1, span JSON", "1, aggregates", "4", "4, span JSON", "4, aggregates"),
        "per exported span (1 or 4 spans per trace; all commands, or one part of them)",
    ),
    "http": (_http_case, tuple(_HTTP_VARIANTS), "per request served over loopback"),
}


def _collected(case: str, variant: str, iterations: int) -> int:
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "benchmarks.instructions",
        "--child",
        case,
        variant,
        str(iterations),
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    found = _COLLECTED.search(done.stderr)
    if found is None:
        raise RuntimeError(f"callgrind printed no count for {case} {variant}")
    return int(found[1])


def count(case: str, variant: str) -> float:
    """Instructions per iteration of ``variant`` of ``case``."""
    short = _collected(case, variant, SHORT)
    long = _collected(case, variant, LONG)
    return (long - short) / (LONG - SHORT)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.instructions")
    parser.add_argument("cases", nargs="*", metavar="CASE", help=", ".join(CASES))
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    options: Any = parser.parse_args(argv)
    if options.child:
        case, variant, iterations = options.child
        CASES[case][0](variant, int(iterations))
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    names = options.cases or list(CASES)
    unknown = [name for name in names if name not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    for name in names:
        _, variants, unit = CASES[name]
        print(f"== {name}: instructions {unit}")
        for variant in variants:
            print(f"{variant:<28}{count(name, variant):>12,.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

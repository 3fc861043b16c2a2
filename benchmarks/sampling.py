"""Scenario 7, what 1 % sampling saves, and what local tail sampling still keeps.

The same traffic (``traffic.py``: requests across three services, one in 100 failing
in the backend, one in 100 slow) runs at sample rate 1.0 and at 0.01 into a real
Redis. Measured per rate: spans and Redis memory per request, the exporter's CPU
time (export alone), Redis's CPU time, the request path's CPU time, how many slow
and failed requests are stored whole (every span of every service: tail sampling
must keep 100 %), and how many requests the aggregates count (all of them). Then
scaled to the README's fleet: 12 services, each answering 100 requests/s.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asynctrace.testing import RedisServer
from benchmarks.options import Options
from benchmarks.report import ScenarioResult, Table, Target
from benchmarks.traffic import Fleet, Measured, fleet, measure

__all__ = ["NAME", "run"]

NAME = "sampling"
TITLE = "8. 1 % sampling vs 100 %: Redis memory, export CPU, slow and failed requests kept"
SERVICES = 12
RATE_PER_SERVICE = 100.0
_GB = 1e9


def _share(part: int, whole: int) -> str:
    return f"{part}/{whole} ({100.0 * part / whole:.0f} %)" if whole else "-"


def _redis_bytes(measured: Measured) -> float:
    return measured.redis_bytes - measured.bytes_by_class.get("aggregates", 0)


def run(options: Options) -> ScenarioResult:
    requests = 300 if options.quick else 20_000
    with RedisServer() as server:
        runs = {
            "100 %": measure(server.url, sample_rate=1.0, requests=requests),
            "1 %": measure(server.url, sample_rate=0.01, requests=requests),
        }
    fleets = {
        name: fleet(measured, services=SERVICES, rate_per_service=RATE_PER_SERVICE)
        for name, measured in runs.items()
    }
    table = Table(TITLE, ["per request, then for the fleet", "100 %", "1 %", "1 % saves"])
    data: dict[str, Any] = {"requests": requests, "services": SERVICES}

    def row(label: str, value: Callable[[Measured, Fleet], float], text: str) -> None:
        full, sampled = (value(runs[name], fleets[name]) for name in ("100 %", "1 %"))
        saved = f"{100.0 * (1 - sampled / full):.0f} %" if full else "-"
        table.rows.append([label, text.format(full), text.format(sampled), saved])
        data[label] = {"100 %": full, "1 %": sampled}

    row("spans stored", lambda m, f: m.spans_stored / m.requests, "{:.2f}")
    row("Redis bytes (aggregates apart)", lambda m, f: _redis_bytes(m) / m.requests, "{:,.0f}")
    row("exporter CPU us", lambda m, f: 1e6 * m.export_cpu_s / m.requests, "{:.1f}")
    row("Redis CPU us", lambda m, f: 1e6 * m.redis_cpu_s / m.requests, "{:.1f}")
    row("request path CPU us", lambda m, f: 1e6 * m.request_cpu_s / m.requests, "{:.1f}")
    row("fleet: trace lists GB/day", lambda m, f: f.trace_list_bytes_per_day / _GB, "{:.2f}")
    row("fleet: Redis memory GB", lambda m, f: f.memory_bytes / _GB, "{:.2f}")
    row("fleet: exporter cores", lambda m, f: f.export_cores, "{:.3f}")
    row("fleet: Redis cores", lambda m, f: f.redis_cores, "{:.3f}")
    for name, measured in runs.items():
        data[name] = {
            "slow_kept_whole": measured.slow_kept_whole,
            "slow_requests": measured.slow_requests,
            "error_kept_whole": measured.error_kept_whole,
            "error_requests": measured.error_requests,
            "aggregate_requests": measured.aggregate_requests,
            "tail_kept": measured.tail_kept,
            "tail_overflow": measured.tail_overflow,
            "bytes_by_class": measured.bytes_by_class,
        }
    full, sampled = runs["100 %"], runs["1 %"]
    table.rows += [
        [
            "slow requests stored whole",
            _share(full.slow_kept_whole, full.slow_requests),
            _share(sampled.slow_kept_whole, sampled.slow_requests),
            "",
        ],
        [
            "failed requests stored whole",
            _share(full.error_kept_whole, full.error_requests),
            _share(sampled.error_kept_whole, sampled.error_requests),
            "",
        ],
        [
            "requests the aggregates count",
            _share(full.aggregate_requests, requests),
            _share(sampled.aggregate_requests, requests),
            "",
        ],
    ]
    table.notes += [
        f"{requests:,} requests per rate, each across 3 services (4 spans each); 1 in 100 "
        "fails in the backend, 1 in 100 is slow there",
        f"fleet: {SERVICES} services x {RATE_PER_SERVICE:.0f} requests/s "
        f"({fleets['1 %'].traces_per_s:.0f} traces/s); memory once every key lives its full "
        "lifetime: 24 h of trace lists, the index (capped), 7 days of error sets",
        "at 1 %, every local root still goes to the exporter for the aggregates: the "
        "exporter's saving is smaller than Redis's",
    ]
    whole = sampled.slow_kept_whole + sampled.error_kept_whole
    wanted = sampled.slow_requests + sampled.error_requests
    targets = [
        Target(
            "slow and failed requests stored whole at 1 %", _share(whole, wanted), whole == wanted
        ),
        Target(
            "aggregates count every request at 1 %",
            _share(sampled.aggregate_requests, requests),
            sampled.aggregate_requests == requests,
        ),
    ]
    return ScenarioResult(NAME, table, targets, data)

"""Scenario 8, capacity: what a span and a trace cost in Redis and in CPU, scaled up.

The traffic of ``traffic.py`` (requests across three services, four spans each) runs
into a real Redis at sample rate 1.0 and 0.01. Measured: Redis bytes per stored span
and per stored trace (``MEMORY USAGE``, every element counted), per trace-index entry,
and for one hour of one (service, operation) pair's aggregates; spans exported per
second of exporter CPU (one core) and per second of Redis CPU; Redis commands per
span; and the exporter's CPU per span into one Redis and into a local 3 + 3 Redis
Cluster (``testing.RedisClusterServer``), side by side. Then the memory and cores of
a fleet of 12 services at 10, 100 and 1,000 requests/s each, at both rates
(``traffic.fleet``: memory once every key lives its full lifetime). The README's
Capacity section and docs/capacity.md quote these.
"""

from __future__ import annotations

from typing import Any

from asynctrace.testing import RedisClusterServer, RedisServer
from benchmarks.options import Options
from benchmarks.report import ScenarioResult, Table, Target
from benchmarks.traffic import SERVICES_PER_TRACE, export_cpu, fleet, measure

__all__ = ["NAME", "run"]

NAME = "capacity"
TITLE = "9. Capacity: Redis bytes and CPU per span, and a fleet of 12 services"
SERVICES = 12
RATES_PER_SERVICE = (10.0, 100.0, 1000.0)
_GB = 1e9


def run(options: Options) -> ScenarioResult:
    requests = 300 if options.quick else 20_000
    with RedisServer() as server:
        full = measure(server.url, sample_rate=1.0, requests=requests)
        sampled = measure(server.url, sample_rate=0.01, requests=requests)
        single_spans, single_cpu_s = export_cpu(server.url, requests=requests)
    # The same spans into a local 3 + 3 Redis Cluster (redis-py's cluster pipeline).
    with RedisClusterServer() as cluster:
        cluster_spans, cluster_cpu_s = export_cpu(cluster.url, requests=requests)
    lists = full.bytes_by_class.get("trace lists", 0)
    per_span = lists / full.spans_stored
    per_trace = lists / full.traces_stored
    per_entry = full.bytes_by_class.get("index", 0) / max(1, full.index_entries)
    # One hour of the run's aggregates: a hash per (service, operation) pair and per
    # edge, and the hour's three sets.
    pairs = SERVICES_PER_TRACE + (SERVICES_PER_TRACE - 1)
    per_pair_hour = full.bytes_by_class.get("aggregates", 0) / pairs
    spans_per_core = full.spans_exported / full.export_cpu_s
    spans_per_redis_core = full.spans_exported / full.redis_cpu_s
    commands_per_span = full.redis_commands / full.spans_exported
    table = Table(TITLE, ["measured", "value"])
    table.rows += [
        ["Redis bytes per stored span (trace list)", f"{per_span:,.0f}"],
        [
            f"Redis bytes per stored trace ({SERVICES_PER_TRACE} services, "
            f"{full.spans_stored // full.traces_stored} spans)",
            f"{per_trace:,.0f}",
        ],
        ["Redis bytes per trace-index entry", f"{per_entry:,.0f}"],
        ["Redis bytes per (service, operation) pair and hour", f"{per_pair_hour:,.0f}"],
        ["spans/s per exporter core (100 %)", f"{spans_per_core:,.0f}"],
        [
            "spans/s per exporter core: one Redis, then a 3 + 3 Redis Cluster",
            f"{single_spans / single_cpu_s:,.0f}, {cluster_spans / cluster_cpu_s:,.0f}",
        ],
        ["spans/s per Redis core (100 %)", f"{spans_per_redis_core:,.0f}"],
        ["Redis commands per span (100 %)", f"{commands_per_span:.2f}"],
    ]
    data: dict[str, Any] = {
        "requests": requests,
        "bytes_per_span": per_span,
        "bytes_per_trace": per_trace,
        "bytes_per_index_entry": per_entry,
        "bytes_per_pair_hour": per_pair_hour,
        "spans_per_exporter_core": spans_per_core,
        "spans_per_redis_core": spans_per_redis_core,
        "commands_per_span": commands_per_span,
        "spans_per_exporter_core_single": single_spans / single_cpu_s,
        "spans_per_exporter_core_cluster": cluster_spans / cluster_cpu_s,
        "fleet": {},
    }
    for rate in RATES_PER_SERVICE:
        for label, measured in (("100 %", full), ("1 %", sampled)):
            scaled = fleet(measured, services=SERVICES, rate_per_service=rate)
            table.rows.append(
                [
                    f"{SERVICES} x {rate:,.0f} req/s at {label}: Redis GB, exporter cores, "
                    "Redis cores",
                    f"{scaled.memory_bytes / _GB:,.2f} GB, {scaled.export_cores:.3f}, "
                    f"{scaled.redis_cores:.3f}",
                ]
            )
            data["fleet"][f"{rate:g} {label}"] = {
                "memory_bytes": scaled.memory_bytes,
                "trace_list_bytes_per_day": scaled.trace_list_bytes_per_day,
                "index_bytes": scaled.index_bytes,
                "error_set_bytes": scaled.error_set_bytes,
                "export_cores": scaled.export_cores,
                "redis_cores": scaled.redis_cores,
            }
    table.notes += [
        f"{requests:,} requests per rate, each across {SERVICES_PER_TRACE} services of 4 spans "
        "(5 tags on the server span, 1 on each other span)",
        "memory: 24 h of trace lists, the trace index (capped at 100,000 entries), 7 days of "
        "error sets; the aggregates add bytes per pair and hour for 35 days",
        "cores: summed over the fleet; Redis runs commands on one core per node",
    ]
    return ScenarioResult(
        NAME,
        table,
        [Target("(no target) spans/s per exporter core", f"{spans_per_core:,.0f}", None)],
        data,
    )

"""Hostile stored data, written straight into Redis as another writer could leave it.

Nothing here goes through asynctrace's exporter: these are the entries and keys a
buggy or malicious writer (another tracer, an old version, ``redis-cli``) can store,
which every reader must survive.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import redis

from asynctrace import keys

__all__ = [
    "T0",
    "HostileTrace",
    "hostile_traces",
    "span_json",
    "store",
]

T0 = float((int(time.time()) - 600) * 1000)
SERVICE = "api"
OPERATION = "GET /hostile"


def span_json(
    trace_id: str,
    span_id: str,
    parent: str | None,
    *,
    start: float = T0,
    duration: float = 10.0,
    service: str = SERVICE,
    operation: str = OPERATION,
    tags: object = None,
    logs: object = None,
    status: str = "ok",
) -> str:
    """One span entry; ``ensure_ascii`` so that lone surrogates travel as JSON escapes,
    as the exporter's ``backslashreplace`` wrote them before this fix."""
    return json.dumps(
        {
            "traceId": trace_id,
            "spanId": span_id,
            "parentSpanId": parent,
            "service": service,
            "operation": operation,
            "kind": "server",
            "startTime": start,
            "endTime": start + duration,
            "duration": duration,
            "status": status,
            "tags": {} if tags is None else tags,
            "logs": [] if logs is None else logs,
        }
    )


def index_entry(trace_id: str, span_id: str, *, service: str, operation: str) -> str:
    return json.dumps([trace_id, span_id, service, operation, "ok", 10.0, T0, 1, ""])


@dataclass(frozen=True)
class HostileTrace:
    """A trace id, its stored entries, and what the reports must say of it."""

    name: str
    trace_id: str
    entries: Sequence[str | bytes]
    cyclic_span_ids: tuple[str, ...] = ()
    spans: int | None = None  # decodable spans; None: not checked
    root_span_id: str | None = None
    index: Sequence[tuple[str, str, str]] = field(default_factory=tuple)


def _id(number: int) -> str:
    return f"{number:016x}"


def _trace(number: int) -> str:
    return f"{number:032x}"


A, B, C, R, X, Y = _id(0xA), _id(0xB), _id(0xC), _id(0x1), _id(0x2), _id(0x3)


def hostile_traces() -> list[HostileTrace]:
    """Every hostile trace the fault suite reads, one concern each."""
    cases: list[HostileTrace] = []

    def add(name: str, entries: Sequence[str | bytes], **expected: object) -> None:
        trace_id = _trace(0x40 + len(cases))
        built = [
            entry.replace("TRACE", trace_id)
            if isinstance(entry, str)
            else entry.replace(b"TRACE", trace_id.encode())
            for entry in entries
        ]
        cases.append(HostileTrace(name, trace_id, built, **expected))  # type: ignore[arg-type]

    add("self_parent", [span_json("TRACE", A, A)], cyclic_span_ids=(A,), spans=1)
    add(
        "two_cycle_without_root",
        [
            span_json("TRACE", A, B, start=T0),
            span_json("TRACE", B, A, start=T0 + 1),
            span_json("TRACE", C, B, start=T0 + 2),
        ],
        cyclic_span_ids=(A,),
        spans=3,
        root_span_id=A,
    )
    add(
        "cycle_beside_a_root",
        [
            span_json("TRACE", R, None, start=T0, duration=100.0),
            span_json("TRACE", X, Y, start=T0 + 5),
            span_json("TRACE", Y, X, start=T0 + 6),
        ],
        cyclic_span_ids=(X,),
        spans=3,
        root_span_id=R,
    )
    add(
        "deeply_nested_entry",
        [span_json("TRACE", R, None), "[" * 100_000, "{" * 50_000, span_json("TRACE", A, R)],
        spans=2,
        root_span_id=R,
    )
    nested: object = "leaf"
    for _ in range(500):
        nested = [nested]
    add(
        "deeply_nested_tags",
        [
            span_json("TRACE", R, None, tags={"deep": nested}),
            span_json("TRACE", A, R).replace(
                '"tags": {}', '"tags": {"deeper": ' + "[" * 5000 + "]" * 5000 + "}"
            ),
        ],
        spans=1,
    )
    add(
        "huge_span",
        [
            span_json(
                "TRACE",
                R,
                None,
                tags={"blob": "x" * 5_000_000, **{f"t{n}": "v" for n in range(20_000)}},
                logs=[{"timestamp": T0, "message": "m" * 100_000, "level": "info"}] * 20,
            )
        ],
        spans=1,
    )
    add(
        "lone_surrogates",
        [
            span_json(
                "TRACE",
                R,
                None,
                service="h\udcff\udcfe",
                operation="GET /\ud800",
                tags={"http.host": "h\udcff\udcfe", "\udfff": "x"},
                logs=[{"timestamp": T0, "message": "bad \udcff", "level": "error"}],
                status="error",
            ),
            b'{"traceId":"TRACE","spanId":"'
            + A.encode()
            + b'","parentSpanId":"'
            + R.encode()
            + b'","service":"raw \xff\xfe bytes","startTime":'
            + str(T0).encode()
            + b',"duration":1}',
        ],
        spans=2,
    )
    add(
        "terminal_escapes",
        [
            span_json(
                "TRACE",
                R,
                None,
                service="\x1b[31mred\x1b[0m",
                operation="\x1b[2J\x1b[H\r\nforged row\x07\x9b2J\u202eevil",
                logs=[{"timestamp": T0, "message": "\x1b]0;title\x07", "level": "error"}],
                status="error",
            )
        ],
        spans=1,
    )
    add(
        "wrong_field_types",
        [
            span_json("TRACE", R, None),
            "null",
            "[]",
            '"a string"',
            "12",
            '{"traceId": 5, "spanId": "' + A + '"}',
            span_json("TRACE", B, R, tags="not an object"),
            span_json("TRACE", B, R, logs={"not": "a list"}),
            span_json("TRACE", B, R, logs=["not an object"]),
            span_json("TRACE", B, R, tags={"n": 1e308, "big": 10**30, "list": [1, {"a": None}]}),
            span_json("TRACE", C, R).replace('"startTime": ' + json.dumps(T0), '"startTime": "x"'),
            span_json("TRACE", C, R, duration=-1.0),
            span_json("TRACE", C, R).replace(
                '"startTime": ' + json.dumps(T0), '"startTime": 1e308'
            ),
            span_json("TRACE", C, R).replace(
                '"startTime": ' + json.dumps(T0), '"startTime": ' + "9" * 5000
            ),
            span_json("TRACE", C, R, status="weird"),
            span_json("TRACE", C, R, duration=1.7976e308),
            span_json("TRACE", C, R, start=253_402_300_799_999.0, duration=1.0),
            span_json(_trace(0xDEAD), C, R),  # another trace's span in this list
        ],
        spans=2,
        root_span_id=R,
    )
    add(
        "extreme_numbers",
        [
            span_json(
                "TRACE",
                R,
                None,
                start=0.0,
                duration=253_402_300_799_999.0,
                logs=[{"timestamp": -1e308, "message": "x", "level": "error"}],
                status="error",
            ),
            span_json("TRACE", A, R, start=253_402_300_799_998.0, duration=1.0),
            span_json("TRACE", B, R, start=5.0, duration=5e-324),
        ],
        spans=3,
        root_span_id=R,
    )
    add("nothing_decodes", ["", "{", "\x00\xff", "[" * 10_000], spans=0)
    return cases


def store(client: redis.Redis, trace: HostileTrace, *, indexed: bool = True) -> None:
    """RPUSH the trace's entries (and an index entry naming it, for listings)."""
    key = keys.trace_key(trace.trace_id)
    client.rpush(key, *trace.entries)
    if indexed:
        client.zadd(
            keys.index_key(),
            {index_entry(trace.trace_id, R, service=SERVICE, operation=OPERATION): T0},
        )

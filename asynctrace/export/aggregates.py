"""The Redis commands that add a batch of spans to the per-hour aggregates.

Which spans count: every local root (the entry span of this process) and every
server span, sampled or not; their hour is the UTC hour of their start time. A
server span whose caller's service is known (tag ``peer.service``, or the
``asynctrace`` entry of the tracestate it continued) also counts on the edge
caller → callee. Key layout and lifetimes are in ``keys.py``.

The batch is summed in memory first, so a batch costs one HINCRBY per (key, field)
it changes, not one per span, and every command touches one key (Redis Cluster).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from asynctrace import keys
from asynctrace.histogram import bucket_of
from asynctrace.model import Span
from asynctrace.propagation import PEER_SERVICE_TAG, caller_service, is_valid_caller_name

__all__ = ["PEER_SERVICE_TAG", "aggregate_commands", "is_aggregated"]

_HOUR_MS = 3_600_000


@dataclass(slots=True)
class _Sum:
    count: int = 0
    errors: int = 0
    max_ms: float = 0.0
    buckets: dict[int, int] = field(default_factory=dict)

    def add(self, span: Span) -> None:
        self.count += 1
        if span.status == "error":
            self.errors += 1
        duration = span.duration
        if duration > self.max_ms:
            self.max_ms = duration
        index = bucket_of(duration)
        buckets = self.buckets
        buckets[index] = buckets.get(index, 0) + 1

    def fields(self) -> list[str]:
        """HINCRBY commands' field/amount pairs, flattened."""
        pairs = ["n", str(self.count)]
        if self.errors:
            pairs += ["e", str(self.errors)]
        for index, count in self.buckets.items():
            pairs += [f"b{index}", str(count)]
        return pairs


def is_aggregated(span: Span) -> bool:
    """True for the spans the aggregates count: local roots and server spans."""
    return span.is_local_root or span.kind == "server"


def caller_of(span: Span) -> str | None:
    """The calling service of a server span, or None when it is not known."""
    peer = span.tags.get(PEER_SERVICE_TAG)
    if peer:
        # Tags can come from application code or an imported file: a caller name
        # becomes part of a Redis key, so it passes the same check as a header's.
        return peer if is_valid_caller_name(peer) else None
    return caller_service(span.tracestate) if span.tracestate else None


def aggregate_commands(
    spans: Iterable[Span], *, prefix: str = keys.DEFAULT_PREFIX, ttl_s: int = keys.AGGREGATE_TTL_S
) -> list[tuple[str, ...]]:
    """The commands (all arguments strings) that count ``spans`` into the aggregates."""
    # Grouped by plain tuples first: the JSON pair member is made once per group.
    operations: dict[tuple[int, str, str], _Sum] = {}
    edges: dict[tuple[int, str, str], _Sum] = {}
    for span in spans:
        if not is_aggregated(span):
            continue
        hour_number = int(span.start_time // _HOUR_MS)
        group = (hour_number, span.service, span.operation)
        total = operations.get(group)
        if total is None:
            total = operations[group] = _Sum()
        total.add(span)
        if span.kind == "server":
            caller = caller_of(span)
            if caller is not None:
                edge = (hour_number, caller, span.service)
                total = edges.get(edge)
                if total is None:
                    total = edges[edge] = _Sum()
                total.add(span)
    if not operations:
        return []
    hour_names: dict[int, str] = {}
    expire_at: dict[str, str] = {}
    for hour_number, _, _ in operations:
        if hour_number not in hour_names:
            hour = hour_names[hour_number] = keys.hour_of(hour_number * _HOUR_MS)
            expire_at[hour] = str((hour_number + 1) * _HOUR_MS // 1000 + ttl_s)
    commands: list[tuple[str, ...]] = []
    members: dict[str, list[str]] = {}
    maxima: dict[str, list[str]] = {}
    for (hour_number, service, operation), total in operations.items():
        hour = hour_names[hour_number]
        pair = keys.pair_member(service, operation)
        key = keys.aggregate_key(hour, pair, prefix=prefix)
        commands += _increments(key, total)
        commands.append(("EXPIREAT", key, expire_at[hour]))
        members.setdefault(hour, []).append(pair)
        maxima.setdefault(hour, []).extend((repr(total.max_ms), pair))
    edge_members: dict[str, list[str]] = {}
    for (hour_number, caller, callee), total in edges.items():
        hour = hour_names[hour_number]
        pair = keys.pair_member(caller, callee)
        key = keys.edge_key(hour, pair, prefix=prefix)
        commands += _increments(key, total)
        commands.append(("EXPIREAT", key, expire_at[hour]))
        edge_members.setdefault(hour, []).append(pair)
    for hour, pairs in members.items():
        index = keys.operation_index_key(hour, prefix=prefix)
        commands += [("SADD", index, *pairs), ("EXPIREAT", index, expire_at[hour])]
        top = keys.max_key(hour, prefix=prefix)
        commands += [("ZADD", top, "GT", *maxima[hour]), ("EXPIREAT", top, expire_at[hour])]
    for hour, pairs in edge_members.items():
        index = keys.edge_index_key(hour, prefix=prefix)
        commands += [("SADD", index, *pairs), ("EXPIREAT", index, expire_at[hour])]
    return commands


def _increments(key: str, total: _Sum) -> list[tuple[str, ...]]:
    fields = total.fields()
    return [("HINCRBY", key, fields[i], fields[i + 1]) for i in range(0, len(fields), 2)]

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

from collections import Counter
from collections.abc import Iterable
from functools import lru_cache

from asynctrace import keys
from asynctrace.histogram import bucket_of
from asynctrace.model import Span
from asynctrace.propagation import PEER_SERVICE_TAG, caller_service, is_valid_caller_name

__all__ = ["PEER_SERVICE_TAG", "aggregate_commands", "is_aggregated"]

_HOUR_MS = 3_600_000


class _Tally:
    """What one key's HINCRBY fields count for a batch: its spans' durations and
    how many of them are errors. Durations are bucketed when the fields are made,
    not per span as they come: a list append per span is the cheapest tally."""

    __slots__ = ("durations", "errors")

    def __init__(self) -> None:
        self.durations: list[float] = []
        self.errors = 0

    def add(self, span: Span) -> None:
        """Count ``span``."""
        self.durations.append(span.duration)
        if span.status == "error":
            self.errors += 1

    @property
    def max_ms(self) -> float:
        """The largest duration, or 0.0 when none is above it."""
        return max(0.0, *self.durations)

    def fields(self) -> list[str]:
        """HINCRBY field/amount pairs, flattened."""
        pairs = ["n", str(len(self.durations))]
        if self.errors:
            pairs += ["e", str(self.errors)]
        for index, count in Counter(map(bucket_of, self.durations)).items():
            pairs += [f"b{index}", str(count)]
        return pairs


# The hour and pair texts of a batch's keys are nearly always those of the batches
# before it: remembered (bounded), they are made once rather than once per batch.
@lru_cache(maxsize=64)
def _hour_named(hour_number: int) -> str:
    return keys.hour_of(hour_number * _HOUR_MS)


@lru_cache(maxsize=1024)
def _pair_member(first: str, second: str) -> str:
    return keys.pair_member(first, second)


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
    # Counted by plain tuples first: the JSON pair member is made once per group.
    operations: dict[tuple[int, str, str], _Tally] = {}
    edges: dict[tuple[int, str, str], _Tally] = {}
    # The hour of the span before, as epoch ms [lower, upper): most of a batch's spans
    # start in the same hour, and two comparisons cost less than computing it.
    hour_number = 0
    lower = upper = 0
    for span in spans:
        is_server = span.kind == "server"
        if not (is_server or span.is_local_root):  # is_aggregated
            continue
        start = span.start_time
        if not lower <= start < upper:
            hour_number = int(start // _HOUR_MS)
            lower = hour_number * _HOUR_MS
            upper = lower + _HOUR_MS
        group = (hour_number, span.service, span.operation)
        tally = operations.get(group)
        if tally is None:
            tally = operations[group] = _Tally()
        # tally.add(span), inline: this runs for every aggregated span.
        tally.durations.append(span.duration)
        if span.status == "error":
            tally.errors += 1
        # caller_of(span), inline for its common case: no peer tag and no tracestate.
        if is_server and (span.tracestate or (span._tags and PEER_SERVICE_TAG in span._tags)):
            caller = caller_of(span)
            if caller is not None:
                edge = (hour_number, caller, span.service)
                tally = edges.get(edge)
                if tally is None:
                    tally = edges[edge] = _Tally()
                tally.add(span)
    if not operations:
        return []
    hour_names: dict[int, str] = {}
    expire_at: dict[str, str] = {}
    for hour_number, _, _ in operations:
        if hour_number not in hour_names:
            hour = hour_names[hour_number] = _hour_named(hour_number)
            expire_at[hour] = str((hour_number + 1) * _HOUR_MS // 1000 + ttl_s)
    commands: list[tuple[str, ...]] = []
    members_of: dict[str, list[str]] = {}
    maxima: dict[str, list[str]] = {}
    for (hour_number, service, operation), tally in operations.items():
        hour = hour_names[hour_number]
        pair = _pair_member(service, operation)
        key = keys.aggregate_key(hour, pair, prefix=prefix)
        commands += _increments(key, tally.fields())
        commands.append(("EXPIREAT", key, expire_at[hour]))
        members_of.setdefault(hour, []).append(pair)
        maxima.setdefault(hour, []).extend((repr(tally.max_ms), pair))
    edge_members: dict[str, list[str]] = {}
    for (hour_number, caller, callee), tally in edges.items():
        hour = hour_names[hour_number]
        pair = _pair_member(caller, callee)
        key = keys.edge_key(hour, pair, prefix=prefix)
        commands += _increments(key, tally.fields())
        commands.append(("EXPIREAT", key, expire_at[hour]))
        edge_members.setdefault(hour, []).append(pair)
    for hour, pairs in members_of.items():
        index = keys.operation_index_key(hour, prefix=prefix)
        commands += [("SADD", index, *pairs), ("EXPIREAT", index, expire_at[hour])]
        top = keys.max_key(hour, prefix=prefix)
        commands += [("ZADD", top, "GT", *maxima[hour]), ("EXPIREAT", top, expire_at[hour])]
    for hour, pairs in edge_members.items():
        index = keys.edge_index_key(hour, prefix=prefix)
        commands += [("SADD", index, *pairs), ("EXPIREAT", index, expire_at[hour])]
    return commands


def _increments(key: str, fields: list[str]) -> list[tuple[str, ...]]:
    return [("HINCRBY", key, fields[i], fields[i + 1]) for i in range(0, len(fields), 2)]

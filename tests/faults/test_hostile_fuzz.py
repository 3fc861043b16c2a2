"""Property tests of the read-side parsers and the trace model over arbitrary input:
span JSON and index entries raise ``SpanDecodeError`` or nothing, and any parent
links, cycles included, give a trace whose every walk ends."""

from __future__ import annotations

import json
import re

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from asynctrace.analysis import critical_path, trace_report
from asynctrace.model import IndexEntry, Span, SpanDecodeError, Trace, decode_span, encode_span
from asynctrace.terminal import terminal_json, terminal_text

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
FIELDS = (
    "traceId", "spanId", "parentSpanId", "service", "operation", "kind", "startTime",
    "endTime", "duration", "status", "tags", "logs",
)  # fmt: skip
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=30)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | ANY_TEXT
    | st.sampled_from([TRACE, "00f067aa0ba902b7", 1764236400123.456, "ok", "error"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
    max_leaves=12,
)
# Span-shaped objects: the real field names holding any JSON value, most of the time
# a plausible one, so that decoding gets past the first checks.
SPAN_OBJECTS = st.fixed_dictionaries(
    {},
    optional={
        name: JSON_VALUES | st.just(plausible)
        for name, plausible in zip(
            FIELDS,
            (TRACE, "00f067aa0ba902b7", None, "svc", "op", "server", 1764236400123.456,
             1764236400223.456, 100.0, "ok", {"k": "v"}, [{"timestamp": 1.0, "message": "m"}]),
            strict=True,
        )
    },
)  # fmt: skip
SETTINGS = settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])


def _decodes_or_refuses(raw: str | bytes) -> Span | None:
    try:
        return decode_span(raw)
    except SpanDecodeError:
        return None


@SETTINGS
@given(st.one_of(ANY_TEXT, st.binary(max_size=60)))
@example("[" * 100_000)
@example(b'{"traceId": "\xff"}')
@example('{"traceId": 1e999}')
def test_decode_span_of_any_text_raises_only_span_decode_error(raw: str | bytes) -> None:
    _decodes_or_refuses(raw)


@SETTINGS
@given(SPAN_OBJECTS)
def test_a_decoded_span_is_valid_text_and_encodes_again(data: dict[str, object]) -> None:
    try:
        raw = json.dumps(data)
    except ValueError:
        return  # not JSON at all (a float JSON cannot hold)
    span = _decodes_or_refuses(raw)
    if span is None:
        return
    text = encode_span(span)
    text.encode("utf-8")  # strict: no lone surrogate survives decoding
    again = decode_span(text)
    assert again.to_dict() == span.to_dict()


@SETTINGS
@given(st.one_of(ANY_TEXT, st.binary(max_size=60), st.lists(JSON_VALUES, min_size=9, max_size=9)))
@example("[" * 100_000)
def test_index_entry_decode_raises_only_span_decode_error(raw: object) -> None:
    text = json.dumps(raw) if isinstance(raw, list) else raw
    assert isinstance(text, str | bytes)
    try:
        entry = IndexEntry.decode(text)
    except SpanDecodeError:
        return
    entry.encode().encode("utf-8")


def _span(number: int, parent: int | None, start: float, duration: float) -> Span:
    return Span.from_dict(
        {
            "traceId": TRACE,
            "spanId": f"{number + 1:016x}",
            "parentSpanId": None if parent is None else f"{parent + 1:016x}",
            "startTime": 1_000_000.0 + start,
            "duration": duration,
            "status": "error" if number % 3 == 0 else "ok",
        }
    )


# Up to 12 spans, each with no parent, a missing one (index >= count) or any span,
# itself included: every shape of forest, cycle and orphan.
GRAPHS = st.integers(min_value=1, max_value=12).flatmap(
    lambda count: st.lists(
        st.tuples(
            st.none() | st.integers(min_value=0, max_value=count + 2),
            st.floats(min_value=0, max_value=100),
            st.floats(min_value=0, max_value=100),
        ),
        min_size=count,
        max_size=count,
    )
)


@SETTINGS
@given(GRAPHS)
@example([(0, 0.0, 1.0)])  # its own parent
@example([(1, 0.0, 5.0), (0, 1.0, 1.0)])  # a -> b -> a, no root
def test_any_parent_links_give_a_forest_every_walk_of_which_ends(
    graph: list[tuple[int | None, float, float]],
) -> None:
    trace = Trace.from_spans(
        _span(number, parent, start, duration)
        for number, (parent, start, duration) in enumerate(graph)
    )
    rows = trace.depth_first()
    assert sorted(span.span_id for span, _ in rows) == sorted(trace.by_id)
    # Each span is reached from exactly one top (root or orphan), through children.
    reached: list[str] = []
    for top in (trace.root, *trace.orphans):
        stack = [top]
        while stack:
            span = stack.pop()
            reached.append(span.span_id)
            assert len(reached) <= len(trace.spans)  # no span twice: no cycle left
            stack.extend(trace.children_of(span))
    assert sorted(reached) == sorted(trace.by_id)
    for span in trace.spans:
        parent = trace.parent_of(span)
        assert (parent is None) == (span is trace.root or span in trace.orphans)
    segments = critical_path(trace)
    assert sum(segment.duration_ms for segment in segments) <= trace.root.duration + 1e-6
    report = trace_report(trace, similar=[trace])
    assert report["cyclic_span_ids"] == sorted(trace.cut_span_ids)
    json.dumps(report)


# What a terminal acts on: C0/C1 controls, DEL, bidi overrides, lone surrogates.
ACTIVE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


@SETTINGS
@given(ANY_TEXT)
@example("\x1b[2J\r\n\x9b31m\u202e\udcff")
def test_terminal_text_leaves_nothing_a_terminal_acts_on(text: str) -> None:
    shown = terminal_text(text)
    assert ACTIVE.search(shown) is None
    assert shown == text or "\\" in shown  # an escape, never a silent deletion


@SETTINGS
@given(JSON_VALUES)
@example({"op": "\x1b[2J\x7f\x9b\u202e\udcff"})
def test_terminal_json_is_the_same_json_with_nothing_a_terminal_acts_on(value: object) -> None:
    try:
        text = json.dumps(value, ensure_ascii=False, indent=2)
    except ValueError:
        return
    shown = terminal_json(text)
    assert ACTIVE.search(shown.replace("\n", " ")) is None
    assert json.loads(shown) == json.loads(text) or shown == text  # NaN != NaN

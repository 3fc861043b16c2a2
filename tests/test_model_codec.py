"""The fast span JSON encoders write exactly what ``json.dumps`` of the dict writes."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from asynctrace.model import (
    IndexEntry,
    Span,
    SpanDecodeError,
    SpanLog,
    decode_span,
    encode_index_entry,
    encode_indexed_span,
    encode_span,
    round_ms,
)
from asynctrace.model.codec import _encode_span_reference, _ms_json, spans_of

# Any text: quotes, backslashes, control characters, non-ASCII, lone surrogates.
texts = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)
# Times as spans hold them, and values that must take the reference path.
plain_ms = st.floats(min_value=0.0, max_value=2.0**42, exclude_max=True)
odd_ms = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**15), max_value=10**15),
    st.sampled_from([2.0**42, 2.0**53, 1e16, -0.0, -1e-9, 0.0005, 0.0015, 1e-7]),
)
times = st.one_of(plain_ms, plain_ms, odd_ms)


def build_span(
    ids: tuple[str, str, str | None],
    names: tuple[str, str, str, str],
    clock: tuple[float, float],
    tags: dict[str, str] | None,
    logs: list[tuple[float, str, str]] | None,
) -> Span:
    span = Span.__new__(Span)
    span.trace_id, span.span_id, span.parent_span_id = ids
    span.service, span.operation, span.kind, span.status = names
    span.start_time, span.duration = clock  # end_time is their sum
    span._tags = tags
    span._logs = None if logs is None else [SpanLog(*log) for log in logs]
    span.is_local_root = span.parent_span_id is None
    return span


spans = st.builds(
    build_span,
    st.tuples(
        st.one_of(st.text(alphabet="0123456789abcdef", min_size=32, max_size=32), texts),
        st.one_of(st.text(alphabet="0123456789abcdef", min_size=16, max_size=16), texts),
        st.one_of(st.none(), texts),
    ),
    st.tuples(texts, texts, st.sampled_from(["server", "client", "internal"]), texts),
    st.tuples(times, times),
    st.one_of(st.none(), st.dictionaries(texts, texts, max_size=6)),
    st.one_of(st.none(), st.lists(st.tuples(times, texts, texts), max_size=3)),
)


def reference(span: Span) -> str | type[Exception]:
    try:
        return _encode_span_reference(span)
    except (ValueError, TypeError) as exc:
        return type(exc)


@settings(deadline=None)  # a loaded CI machine must not turn slowness into failure
@given(spans)
def test_encode_span_is_byte_for_byte_json_dumps_of_to_dict(span: Span) -> None:
    expected = reference(span)
    if isinstance(expected, str):
        assert encode_span(span) == expected
    else:
        with pytest.raises(expected):
            encode_span(span)


@settings(deadline=None)
@given(spans)
def test_index_entry_encoding_matches_the_dataclass_and_json_dumps(span: Span) -> None:
    entry = IndexEntry.of(span)
    assert entry.encode() == entry._encode_reference()
    assert encode_index_entry(span) == entry.encode()


@settings(deadline=None)
@given(plain_ms)
@example(0.0)
@example(0.0005)  # exactly halfway in decimal, not in binary
@example(1.0005)
@example(2.0**42 - 2.0**-10)
@example(1764236400123.4565)
@example(9.9995)
@example(1764236400123.9996)
def test_millisecond_text_is_json_of_the_time_rounded_to_the_microsecond(value: float) -> None:
    assert _ms_json(value) == json.dumps(round_ms(value))
    # round_ms rounds with float additions (2**52 on and off): exactly round()'s result.
    assert round_ms(value) == round(value * 1000.0) / 1000.0
    # The rounding rule differs from round(value, 3) only on a tie in the last place.
    assert abs(round_ms(value) - round(value, 3)) <= 0.001 + math.ulp(value)


@pytest.mark.parametrize("value", [math.nan, math.inf, -1.0, 2.0**42, 5])
def test_millisecond_text_refuses_what_it_cannot_prove(value: float) -> None:
    with pytest.raises(ValueError, match="plain float"):
        _ms_json(value)


def test_seed_span_keeps_its_field_order_and_escapes() -> None:
    span = build_span(
        ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", None),
        ('GET "/quoted"\n', "ops\\svc", "server", "error"),
        (1764236400123.456, 2500.444),
        {"http.method": "GET", "é": "\u2028\x00"},
        [(1764236400200.1, "cache miss", "info")],
    )
    assert encode_span(span) == json.dumps(
        span.to_dict(), separators=(",", ":"), ensure_ascii=False
    )
    assert list(json.loads(encode_span(span))) == [
        "traceId", "spanId", "parentSpanId", "service", "operation", "kind",
        "startTime", "endTime", "duration", "status", "tags", "logs",
    ]  # fmt: skip


@settings(deadline=None)
@given(spans)
def test_an_indexed_span_encodes_as_its_span_json_score_and_index_entry(span: Span) -> None:
    expected = reference(span)
    if not isinstance(expected, str):
        with pytest.raises(expected):
            encode_indexed_span(span)
        return
    entry, score, index_entry = encode_indexed_span(span)
    assert entry == expected
    assert index_entry == encode_index_entry(span)
    # The score names the double of the entry's startTime (a NaN start equals nothing,
    # itself included: then all three are NaN).
    start = json.loads(entry)["startTime"]
    rounded = round_ms(span.start_time)
    if math.isnan(rounded):
        assert math.isnan(float(score))
        assert math.isnan(start)
    else:
        assert float(score) == rounded == start


# -- entries nested past the recursion limit (readers survive any stored data) ---------


def test_a_span_entry_nested_past_the_recursion_limit_is_a_decode_error() -> None:
    with pytest.raises(SpanDecodeError, match="nested too deeply"):
        decode_span("[" * 100_000)
    valid = build_span(
        ("0af7651916cd43dd8448eb211c80319c", "00f067aa0ba902b7", None),
        ("orders", "GET /orders", "server", "ok"),
        (1_700_000_000_000.0, 5.0),
        None,
        None,
    )
    entries = ["[" * 100_000, '{"tags": ' + "[" * 100_000, encode_span(valid)]
    spans, corrupt = spans_of(entries)
    assert (len(spans), corrupt) == (1, 2)


def test_an_index_entry_nested_past_the_recursion_limit_is_a_decode_error() -> None:
    with pytest.raises(SpanDecodeError, match="not a trace index entry"):
        IndexEntry.decode("[" * 100_000)

"""Coverage-guided fuzzing (atheris, libFuzzer) of what asynctrace parses from
outside: trace headers and span JSON.

    python -m tests.faults.fuzz TARGET [libFuzzer options] [corpus directories]

TARGET is one of ``traceparent``, ``tracestate``, ``headers`` (traceparent,
tracestate, X-Trace-ID and X-Span-ID together, repeated lines included) and
``span`` (span JSON decoding, then encoding what decoded). Each input must end
without an exception, an internal error reported (a caught bug), or an id that
is not lowercase hex of its length; libFuzzer's ``-timeout`` turns a hang into a
failure. The seeds live in ``tests/faults/corpus/TARGET``.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable

import atheris

# Only asynctrace's own code is instrumented: instrumenting redis and aiohttp too
# (imported by asynctrace) costs seconds at start and guides nothing.
with atheris.instrument_imports(include=["asynctrace"]):
    from multidict import CIMultiDict

    from asynctrace import _ratelimit
    from asynctrace.model import SpanContext, SpanDecodeError, decode_span, encode_span
    from asynctrace.propagation import extract, parse_traceparent, parse_tracestate

_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_SPAN_ID = re.compile(r"[0-9a-f]{16}")
# What a valid tracestate passed on may hold: printable ASCII, no OWS at the ends.
_TRACESTATE = re.compile(r"([\x21-\x7e][\x20-\x7e]*[\x21-\x7e]|[\x21-\x7e])?")


def _text(data: bytes) -> str:
    # As aiohttp decodes header bytes: invalid UTF-8 becomes lone surrogates.
    return data.decode("utf-8", "surrogateescape")


def _check_context(context: SpanContext | None) -> None:
    if context is None:
        return
    assert _TRACE_ID.fullmatch(context.trace_id), context
    assert context.trace_id != "0" * 32, context
    span_id = context.span_id
    assert span_id is None or (_SPAN_ID.fullmatch(span_id) and span_id != "0" * 16), context
    _check_tracestate(context.tracestate)


def _check_tracestate(value: str) -> None:
    assert isinstance(value, str)
    assert len(value) <= 512, len(value)
    assert _TRACESTATE.fullmatch(value), value


def fuzz_traceparent(data: bytes) -> None:
    _check_context(parse_traceparent(_text(data)))


def fuzz_tracestate(data: bytes) -> None:
    _check_tracestate(parse_tracestate(_text(data).split("\n")))


def fuzz_headers(data: bytes) -> None:
    headers: CIMultiDict[str] = CIMultiDict()
    names = ("traceparent", "tracestate", "X-Trace-ID", "x-span-id")
    for number, line in enumerate(_text(data).split("\n")[:8]):
        headers.add(names[number % len(names)], line)
    _check_context(extract(headers))
    _check_context(extract(dict(headers)))


def fuzz_span(data: bytes) -> None:
    try:
        span = decode_span(data)
    except SpanDecodeError:
        return
    _check_context(SpanContext(span.trace_id, span.span_id))
    # What decoded can be written again: the exporter encodes imported spans.
    encode_span(span)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "traceparent": fuzz_traceparent,
    "tracestate": fuzz_tracestate,
    "headers": fuzz_headers,
    "span": fuzz_span,
}


def checked(target: Callable[[bytes], None]) -> Callable[[bytes], None]:
    """``target``, failing when it made asynctrace report an internal error."""

    def run(data: bytes) -> None:
        before = _ratelimit.internal_error_count()
        target(data)
        after = _ratelimit.internal_error_count()
        assert after == before, f"{after - before} internal error(s) reported"

    return run


def main() -> None:
    name = sys.argv[1]
    atheris.Setup([sys.argv[0], *sys.argv[2:]], checked(TARGETS[name]))
    atheris.Fuzz()


if __name__ == "__main__":
    main()

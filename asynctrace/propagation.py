"""Trace context headers: W3C ``traceparent``/``tracestate`` and ``X-Trace-ID``/``X-Span-ID``.

Rules follow the W3C Trace Context Recommendation (23 November 2021,
https://www.w3.org/TR/2021/REC-trace-context-1-20211123/); section numbers in the
comments point into it. Level 2 (https://www.w3.org/TR/trace-context-2/) adds the
random trace-id flag and, in its current editor's draft (w3c/trace-context#584, which
the W3C test harness follows), a simpler tracestate key grammar and lets vendors
discard duplicate keys; both are implemented, and Level 1 headers stay valid.
Everything that reads a header validates before an id leaves this module, and
nothing here raises: a header that is absent, malformed or of the wrong type reads
as "no parent", so the caller starts a new trace.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from typing import TypeVar, cast

from asynctrace._ratelimit import report_internal_error
from asynctrace.context import current_span
from asynctrace.ids import is_valid_span_id, is_valid_trace_id
from asynctrace.model import Span, SpanContext

__all__ = [
    "PEER_SERVICE_TAG",
    "SPAN_ID_HEADER",
    "TRACEPARENT_HEADER",
    "TRACESTATE_HEADER",
    "TRACE_ID_HEADER",
    "VENDOR_KEY",
    "caller_service",
    "extract",
    "format_traceparent",
    "headers_to_add",
    "inject",
    "is_valid_caller_name",
    "parse_traceparent",
    "parse_tracestate",
    "trace_headers",
]

# W3C §3.2.1/§3.3.1: receivers accept any case, senders SHOULD use lowercase.
TRACEPARENT_HEADER = "traceparent"
TRACESTATE_HEADER = "tracestate"
# The seed tracer's headers, spelled as DESIGN.md fixes them.
TRACE_ID_HEADER = "X-Trace-ID"
SPAN_ID_HEADER = "X-Span-ID"

_LOWER_TRACE_ID_HEADER = TRACE_ID_HEADER.lower()
_LOWER_SPAN_ID_HEADER = SPAN_ID_HEADER.lower()
_READ_NAMES = frozenset(
    (TRACEPARENT_HEADER, TRACESTATE_HEADER, _LOWER_TRACE_ID_HEADER, _LOWER_SPAN_ID_HEADER)
)
_READ_NAME_LENGTHS = frozenset(len(name) for name in _READ_NAMES)

# W3C §3.2.2: version 00 is exactly "vv-" + 32 + "-" + 16 + "-" + 2 = 55 characters.
_TRACEPARENT_LENGTH = 55
# W3C §3.2.4: future versions may be longer, but "only disallow prohibitively large
# headers". Anything past this is not worth stripping or scanning.
_MAX_TRACEPARENT_LENGTH = 512
# A translation table that maps each lowercase hex digit (HEXDIGLC) to "0", keeps "-"
# and maps every other byte to "x": a version-format traceparent's bytes, translated,
# read exactly as _TRACEPARENT_SHAPE (its dashes in their places, hex digits elsewhere).
_TO_TRACEPARENT_SHAPE = bytes(
    ord("0") if chr(byte) in "0123456789abcdef" else byte if chr(byte) == "-" else ord("x")
    for byte in range(256)
)
_TRACEPARENT_SHAPE = b"00-" + b"0" * 32 + b"-" + b"0" * 16 + b"-00"
_ZERO_TRACE_ID = "0" * 32
_ZERO_SPAN_ID = "0" * 16
# The sampled flag is bit 0 of trace-flags (W3C §3.2.2.5.1): it is set exactly when
# the last hex digit is odd, which spares an int() call on the hot path.
_ODD_HEX_DIGITS = frozenset("13579bdf")
# Level 2's random trace-id flag is bit 1 (0x02): set in the last hex digits 2, 3, 6,
# 7, a, b, e and f.
_RANDOM_FLAG_DIGITS = frozenset("2367abef")
# format_traceparent's flags by (is_sampled, is_random); every other bit MUST be zero.
_FLAGS = {(False, False): "00", (True, False): "01", (False, True): "02", (True, True): "03"}
# RFC 7230 §3.2.3 OWS: spaces and horizontal tabs, nothing else.
_OWS = " \t"

# W3C §3.3.1.5: vendors SHOULD propagate at least 512 characters; that is also the
# most we propagate, so a span never carries more than this much of someone's state.
_MAX_PROPAGATED_TRACESTATE = 512
# W3C §3.3.1.5: entries longer than this are the first to go when truncating.
_LARGE_TRACESTATE_ENTRY = 128
# W3C §3.3.1.2: at most 32 list-members. Empty members are dropped and not counted
# (§3.3.1.1 allows them because combining header lines produces them).
_MAX_TRACESTATE_MEMBERS = 32
# Caps checked before any parsing, so a hostile header costs O(cap) at most. The
# largest valid value is 32 members of 513 characters plus 31 commas (16 447
# characters); twice that leaves room for OWS and empty members.
_MAX_TRACESTATE_INPUT = 32 * 1024
_MAX_TRACESTATE_PIECES = 4 * _MAX_TRACESTATE_MEMBERS
# A 32-digit id with generous OWS around it; longer values are rejected unread.
_MAX_ID_HEADER_LENGTH = 64

# W3C Level 2 key grammar (editor's draft, w3c/trace-context#584):
#   key     = ( lcalpha / DIGIT ) 0*255( keychar )
#   keychar = lcalpha / DIGIT / "_" / "-" / "*" / "/" / "@"
# Every Level 1 key (simple-key, or tenant-id "@" system-id within 241 + 14) matches
# it; so do "foo@", "foo@@bar" and a 242-character tenant, which the W3C harness
# expects to be passed on. A key still starts with a letter or digit ("@foo" fails)
# and is at most 256 characters.
_TRACESTATE_KEY = re.compile(r"[a-z0-9][a-z0-9_\-*/@]{0,255}")
_MAX_TRACESTATE_VALUE = 256

VENDOR_KEY = "asynctrace"
"""Our tracestate key; its value is the calling service's name (``caller_service``)."""
PEER_SERVICE_TAG = "peer.service"
"""The server span tag naming the calling service, as read from our tracestate entry."""
_VENDOR_PREFIX = VENDOR_KEY + "="
# Service names are percent-encoded into a tracestate value: everything outside
# %x21-7E, and ",", "=" and "%" themselves (§3.3.1.3.2 forbids "," and "=").
_VENDOR_UNSAFE = re.compile(r"[^\x21-\x7e]|[,=%]")
_PERCENT_ESCAPE = re.compile(r"%([0-9A-F]{2})")
# The caller's name comes from a header anyone can send and becomes part of Redis
# keys (the service map's edges, kept 35 days), so only a conservative name is
# believed once decoded: 1 to 64 ASCII letters, digits, ".", "_", "-", ":", "/" and
# inner spaces. Control, bidi and other non-ASCII characters, "%", quotes and
# anything longer name no caller. (How many distinct callers there may be is not
# capped here.)
_CALLER_NAME = re.compile(r"[A-Za-z0-9._:/-](?:[A-Za-z0-9._:/ -]{0,62}[A-Za-z0-9._:/-])?")
# Percent-encoded, 64 characters are at most 64 x 3: anything longer is not read.
_MAX_CALLER_VALUE = 3 * 64

# Parse results of recently seen tracestate values (tracestate -> validated value,
# and validated value -> caller). Values longer than a propagated tracestate are
# parsed every time; at most _MAX_CACHED_ENTRIES of each are kept (~150 KB).
_MAX_CACHED_TEXT = _MAX_PROPAGATED_TRACESTATE
_MAX_CACHED_ENTRIES = 256
_parsed_tracestates: dict[str, str] = {}
_callers: dict[str, str | None] = {}
# Outgoing tracestate values by (incoming tracestate, service): every client call of a
# trace makes the same one, and a service sees few distinct incoming values.
_outgoing_with_caller: dict[str, str] = {}
_UNKNOWN = object()
_T = TypeVar("_T")
# SpanContext without its Python-level __new__: extract() runs once per request.
_new_context = tuple.__new__


def parse_traceparent(value: str) -> SpanContext | None:
    """Parse a ``traceparent`` header value; None when it is not valid.

    Implements W3C §3.2.2 (field grammar) and §3.2.4 (future versions). The result
    has ``tracestate=""``; ``extract()`` attaches the tracestate. Never raises, for
    any input type.
    """
    try:
        fields = _traceparent_fields(value)
        if fields is None:
            return None
        trace_id, span_id, is_sampled, is_random = fields
        return SpanContext(trace_id, span_id, is_sampled, "", is_random)
    except Exception as exc:
        report_internal_error("traceparent parsing failed", exc)
        return None


def parse_tracestate(values: str | Sequence[str]) -> str:
    """Validate ``tracestate`` header lines and return the value to pass on, or "".

    Several lines are combined in order with commas (W3C §3.3.1.1, RFC 7230 §3.2.2).
    The whole header is dropped ("") when any list-member is malformed or there are
    more than 32 members (§3.3.1.2); empty and whitespace-only members are allowed
    and dropped. A repeated key keeps its first (leftmost, most recent) entry: Level 2
    lets vendors discard duplicates they did not make, and the rest of the header
    stays valid. The result is the members
    joined by "," without OWS, cut to at most 512 characters by dropping whole
    entries as §3.3.1.5 says. Never raises.
    """
    try:
        combined = _combine(values)
        if combined is None:
            return ""
        pieces = combined.split(",")
        if len(pieces) > _MAX_TRACESTATE_PIECES:
            return ""
        members: list[str] = []
        keys: set[str] = set()
        count = 0
        for piece in pieces:
            # §3.3.1.1: spaces and tabs around a list-member are ignored. A value
            # may start with spaces (kept) but must end with a non-space (§3.3.1.3.2),
            # so trailing spaces are OWS and go too.
            member = piece.strip(_OWS)
            if not member:
                continue
            key, equals, member_value = member.partition("=")
            if not equals or not _is_tracestate_member(key, member_value):
                return ""
            count += 1
            if count > _MAX_TRACESTATE_MEMBERS:
                return ""  # counted before duplicates go: the list itself is too long
            if key not in keys:
                keys.add(key)
                members.append(member)
        return _truncate_tracestate(members)
    except Exception as exc:
        report_internal_error("tracestate parsing failed", exc)
        return ""


def format_traceparent(
    trace_id: str, span_id: str, *, is_sampled: bool, is_random: bool = False
) -> str:
    """Format a version-00 ``traceparent`` value.

    The ids are not checked: pass ids made by ``asynctrace.ids`` or read by
    ``parse_traceparent``. Sets the sampled flag (0x01) and, with ``is_random``, the
    Level 2 random trace-id flag (0x02); the other flags MUST be zero.
    """
    return f"00-{trace_id}-{span_id}-{_FLAGS[bool(is_sampled), bool(is_random)]}"


def extract(headers: Mapping[str, str]) -> SpanContext | None:
    """Read the caller's trace context from incoming request headers; None when absent.

    ``headers`` may be any mapping: aiohttp's ``CIMultiDictProxy`` (read with
    ``getall``, so repeated header lines are seen) or a plain dict (names matched in
    any case). A valid ``traceparent`` wins and brings its ``tracestate`` with it;
    otherwise a valid ``X-Trace-ID`` (either case, stored lowercase) with an optional
    ``X-Span-ID`` is used, sampled. Repeated differing ``traceparent`` lines make it
    invalid (the W3C test suite expects a restart). Everything invalid gives None, so
    the caller starts a new trace. Never raises.
    """
    try:
        # lines(name, default): every line of a header, by lowercase name, in any
        # case. A multidict (aiohttp's CIMultiDictProxy) answers with its own getall,
        # case-insensitive and keeping repeated lines apart; other mappings are read
        # by _mapping_lines.
        getall = getattr(headers, "getall", None)
        lines = getall if callable(getall) else _mapping_lines(headers)
        values = lines(TRACEPARENT_HEADER, ())
        # One line is the common case: _single only matters for repeated lines.
        traceparent = _traceparent_fields(values[0] if len(values) == 1 else _single(values))
        if traceparent is not None:
            # §3.3: tracestate is parsed only once traceparent is valid, and a bad
            # tracestate never invalidates the traceparent.
            trace_id, span_id, is_sampled, is_random = traceparent
            states = lines(TRACESTATE_HEADER, ())
            tracestate = _tracestate_of(states) if states else ""
            return _new_context(SpanContext, (trace_id, span_id, is_sampled, tracestate, is_random))
        seed_trace_id = _hex_id(_single(lines(_LOWER_TRACE_ID_HEADER, ())), 32)
        if seed_trace_id is None:
            return None
        seed_span_id = _hex_id(_single(lines(_LOWER_SPAN_ID_HEADER, ())), 16)
        return SpanContext(seed_trace_id, seed_span_id, True, "")
    except Exception as exc:
        report_internal_error("trace header extraction failed", exc)
        return None


def inject(headers: MutableMapping[str, str], span: Span | SpanContext | None = None) -> None:
    """Add trace context headers for ``span`` (default: the current span) to ``headers``.

    Sets ``traceparent`` (the span's own id as parent-id), ``tracestate`` (when the
    span carries one), ``X-Trace-ID`` and ``X-Span-ID``. A header the caller already
    set, in any case, is left alone; so is ``tracestate`` when the caller set their
    own ``traceparent``, and ``X-Span-ID`` when they set ``X-Trace-ID``, so a pair
    never mixes two traces. Outside a span nothing is added. Never raises.
    """
    try:
        target = span if span is not None else current_span()
        if target is None:
            return
        new = _headers_for(target)
        if not new:
            return
        # Typed as objects: a caller's mapping may hold non-str names at runtime.
        names: Iterable[object] = headers
        present = {name.lower() for name in names if isinstance(name, str)}
        for name, value in _missing(new, present).items():
            headers[name] = value
    except Exception as exc:
        report_internal_error("trace header injection failed", exc)


def headers_to_add(present: set[str], span: Span | SpanContext | None = None) -> dict[str, str]:
    """The headers ``inject()`` would add to a request whose header names are ``present``.

    ``present`` holds the request's header names, lowercase (it is not changed). For
    clients whose header objects are costly to read name by name (httpx): read the
    names once, add what this returns. Empty outside a span. Never raises.
    """
    try:
        target = span if span is not None else current_span()
        if target is None:
            return {}
        return _missing(_headers_for(target), present)
    except Exception as exc:
        report_internal_error("trace header injection failed", exc)
        return {}


def _missing(new: dict[str, str], present: set[str]) -> dict[str, str]:
    """``new`` without the headers the caller set; a pair never mixes two traces."""
    if not present:
        return new
    skipped = present
    if TRACEPARENT_HEADER in present or _LOWER_TRACE_ID_HEADER in present:
        skipped = set(present)
        if TRACEPARENT_HEADER in present:
            skipped.add(TRACESTATE_HEADER)
        if _LOWER_TRACE_ID_HEADER in present:
            skipped.add(_LOWER_SPAN_ID_HEADER)
    return {name: value for name, value in new.items() if name.lower() not in skipped}


def trace_headers(span: Span | SpanContext | None = None) -> dict[str, str]:
    """A new dict of the headers ``inject()`` would add for ``span`` (default: current).

    Empty outside a span. For a manual outgoing call:
    ``await session.get(url, headers=asynctrace.trace_headers())``. Never raises.
    """
    try:
        target = span if span is not None else current_span()
        if target is None:
            return {}
        return _headers_for(target)
    except Exception as exc:
        report_internal_error("trace header injection failed", exc)
        return {}


def _headers_for(span: Span | SpanContext) -> dict[str, str]:
    # Ids are checked again on the way out: a SpanContext may be built by hand, and
    # a header value must never carry a newline into someone's request.
    trace_id = span.trace_id
    if not is_valid_trace_id(trace_id):
        return {}
    span_id = span.span_id
    if span_id is None or not is_valid_span_id(span_id):
        # Without a parent-id there is no traceparent, and W3C §4.2 says a
        # tracestate without a traceparent is invalid: send the seed header only.
        return {TRACE_ID_HEADER: trace_id}
    # Level 2: the random flag is kept on every outgoing request of a trace that
    # arrived with it, and set on the traces we start (our trace ids are random).
    headers = {
        TRACEPARENT_HEADER: f"00-{trace_id}-{span_id}-"
        + _FLAGS[bool(span.is_sampled), bool(span.is_random)]
    }
    tracestate = _outgoing_tracestate(span.tracestate)
    if isinstance(span, Span) and span.service:
        tracestate = _with_caller(tracestate, span.service)
    if tracestate:
        headers[TRACESTATE_HEADER] = tracestate
    headers[TRACE_ID_HEADER] = trace_id
    headers[SPAN_ID_HEADER] = span_id
    return headers


def _outgoing_tracestate(value: object) -> str:
    """The span's tracestate, re-validated only when it could not have come from us.

    ``parse_tracestate`` output is printable ASCII of at most 512 characters, so that
    cheap check passes it straight through; anything else (set by hand) goes through
    the full parser, which drops what the spec would not allow.
    """
    if not isinstance(value, str) or not value:
        return ""
    if len(value) <= _MAX_PROPAGATED_TRACESTATE and value.isascii() and value.isprintable():
        return value
    return parse_tracestate(value)


def _traceparent_fields(value: object) -> tuple[str, str, bool, bool] | None:
    """(trace_id, parent_id, is_sampled, is_random) of a valid traceparent, else None."""
    if type(value) is str and len(value) == _TRACEPARENT_LENGTH and value[:3] == "00-":
        # The common case, version 00 with nothing around it: only the check below.
        text = value
    else:
        if not isinstance(value, str) or len(value) > _MAX_TRACEPARENT_LENGTH:
            return None
        # Header values may arrive with OWS around them (RFC 7230 §3.2.4); the W3C test
        # suite sends " 00-...-01 \t" and expects it to be accepted.
        text = value.strip(_OWS)
        size = len(text)
        version = text[:2]
        if version == "00":
            # §3.2.2.2: version 00 is exactly version-format, nothing after the flags.
            if size != _TRACEPARENT_LENGTH:
                return None
        elif (
            # §3.2.4: a higher version is parsed as 00 when it is at least 55 long and
            # the flags are followed by the end or a dash; §3.2.2.1: ff is invalid.
            size < _TRACEPARENT_LENGTH
            or version == "ff"
            or (size > _TRACEPARENT_LENGTH and text[_TRACEPARENT_LENGTH] != "-")
        ):
            return None
        text = text[:_TRACEPARENT_LENGTH]  # a higher version's extra fields are not read
    # §3.2.2: version, trace-id, parent-id and flags are lowercase hex (HEXDIGLC) of
    # 2, 32, 16 and 2 digits, dash-separated. One translate through a table checks
    # every position at once: cheaper than a regular expression, and than a translate
    # that deletes the hex digits (it builds a 256-byte table on every call).
    shape = text.encode().translate(_TO_TRACEPARENT_SHAPE) if text.isascii() else None
    if shape != _TRACEPARENT_SHAPE:
        return None
    trace_id = text[3:35]
    span_id = text[36:52]
    # §3.2.2.3/§3.2.2.4: all-zero ids are invalid and the header MUST be ignored.
    # With the check above this is exactly ids.is_valid_trace_id/is_valid_span_id.
    if trace_id == _ZERO_TRACE_ID or span_id == _ZERO_SPAN_ID:
        return None
    flags = text[54]
    return trace_id, span_id, flags in _ODD_HEX_DIGITS, flags in _RANDOM_FLAG_DIGITS


def _mapping_lines(headers: object) -> Callable[[str, Sequence[object]], Sequence[object]]:
    """``lines(name, default)`` of a mapping that is not a multidict: its items read
    in one pass, keeping only the four names this module reads, by lowercase name."""
    found: dict[str, list[object]] = {}
    items = getattr(headers, "items", None)
    if callable(items):
        for key, value in items():
            # The length test skips most unrelated headers before lowercasing them.
            if isinstance(key, str) and len(key) in _READ_NAME_LENGTHS:
                name = key.lower()
                if name in _READ_NAMES:
                    found.setdefault(name, []).append(value)
    return found.get


def _single(values: Sequence[object]) -> object:
    """The header's value, or None when absent or sent as several differing lines.

    traceparent and the X- headers are single values, not lists (RFC 7230 §3.2.2
    forbids repeating them); identical repeats are harmless, differing ones are
    ambiguous and read as invalid.
    """
    if not values:
        return None
    first = values[0]
    for other in values[1:]:
        if other != first:
            return None
    return first


def _hex_id(value: object, length: int) -> str | None:
    """An X-Trace-ID/X-Span-ID value as a lowercase id, or None unless valid."""
    if not isinstance(value, str) or len(value) > _MAX_ID_HEADER_LENGTH or not value.isascii():
        return None
    candidate = value.strip(_OWS).lower()
    is_valid = is_valid_trace_id if length == 32 else is_valid_span_id
    return candidate if is_valid(candidate) else None


def _tracestate_of(lines: Sequence[object]) -> str:
    if not lines:
        return ""
    if len(lines) == 1:
        only = lines[0]
        if not isinstance(only, str):
            return ""
        # A service's callers send the same few tracestates over and over: parse
        # each once. Bounded, and cleared when full, since the header is untrusted.
        parsed = _parsed_tracestates.get(only)
        if parsed is None:
            parsed = parse_tracestate(only)
            _remember(_parsed_tracestates, only, parsed)
        return parsed
    strings = [line for line in lines if isinstance(line, str)]
    return parse_tracestate(strings) if len(strings) == len(lines) else ""


def _combine(values: object) -> str | None:
    """Join tracestate lines with commas, or None when they are not strings or too big."""
    if isinstance(values, str):
        return values if len(values) <= _MAX_TRACESTATE_INPUT else None
    if not isinstance(values, Sequence):
        return None
    total = 0
    lines: list[str] = []
    for line in values:
        if not isinstance(line, str):
            return None
        total += len(line) + 1
        if total > _MAX_TRACESTATE_INPUT + 1 or len(lines) >= _MAX_TRACESTATE_PIECES:
            return None
        lines.append(line)
    return ",".join(lines)


def _is_tracestate_member(key: str, value: str) -> bool:
    # §3.3.1.3.2: value = 0*255(chr) nblk-chr, chr = %x20-7E except "," and "=".
    # The caller split on "," and stripped trailing OWS, so the last character is
    # not a space; isascii + isprintable is exactly %x20-7E (tabs and DEL excluded).
    return (
        0 < len(value) <= _MAX_TRACESTATE_VALUE
        and value.isascii()
        and value.isprintable()
        and "=" not in value
        and _TRACESTATE_KEY.fullmatch(key) is not None
    )


def _truncate_tracestate(members: list[str]) -> str:
    """Join members, dropping whole entries until the value fits in 512 characters.

    W3C §3.3.1.5: truncate whole entries only; entries over 128 characters SHOULD go
    first, then entries from the end. Only as many as needed are removed, rightmost
    first within each step, so the leftmost (most recent) vendor survives longest.
    """
    total = sum(len(member) for member in members) + len(members) - 1
    if total <= _MAX_PROPAGATED_TRACESTATE:
        return ",".join(members)
    kept = list(members)
    for index in range(len(kept) - 1, -1, -1):
        if total <= _MAX_PROPAGATED_TRACESTATE:
            break
        if len(kept[index]) > _LARGE_TRACESTATE_ENTRY:
            total -= len(kept.pop(index)) + 1
    while kept and total > _MAX_PROPAGATED_TRACESTATE:
        total -= len(kept.pop()) + 1
    return ",".join(kept)


def caller_service(tracestate: str) -> str | None:
    """The calling service named by our ``asynctrace`` tracestate entry, or None.

    The client side of a traced call puts its own service there (leftmost, W3C
    §3.5), so the server span it starts knows its caller. The header is untrusted,
    so a decoded name outside the conservative set of ``is_valid_caller_name`` (1 to 64
    characters) names no caller either. Never raises.
    """
    given: object = tracestate  # checked as an object: callers may pass anything
    if not isinstance(given, str):
        return None
    known = _callers.get(given, _UNKNOWN)
    if known is not _UNKNOWN:
        return cast("str | None", known)
    caller = _caller_in(tracestate)
    _remember(_callers, tracestate, caller)
    return caller


def _caller_in(tracestate: str) -> str | None:
    try:
        for member in tracestate.split(","):
            member = member.strip(_OWS)
            if member.startswith(_VENDOR_PREFIX):
                value = member[len(_VENDOR_PREFIX) :]
                if len(value) > _MAX_CALLER_VALUE:
                    return None
                encoded = _PERCENT_ESCAPE.sub(lambda match: chr(int(match[1], 16)), value)
                # Encoded as UTF-8 bytes, one escape per byte: undo both steps.
                name = encoded.encode("latin-1").decode("utf-8")
                return name if is_valid_caller_name(name) else None
        return None
    except Exception:
        return None  # a foreign or garbled entry names no caller


def _remember(cache: dict[str, _T], text: str, result: _T) -> None:
    """Keep ``result`` for ``text`` in a parse cache, within its bounds."""
    if len(text) <= _MAX_CACHED_TEXT:
        if len(cache) >= _MAX_CACHED_ENTRIES:
            cache.clear()  # untrusted input could fill it: start over, never grow
        cache[text] = result


def is_valid_caller_name(name: object) -> bool:
    """True when ``name`` may name a calling service (``peer.service``, an edge).

    1 to 64 characters: ASCII letters, digits, ``.``, ``_``, ``-``, ``:``, ``/``, and
    spaces that are neither first nor last. Nothing else (no control, bidi or other
    non-ASCII characters), since the name becomes part of Redis keys.
    """
    return isinstance(name, str) and _CALLER_NAME.fullmatch(name) is not None


def _vendor_value(service: str) -> str:
    raw = service.encode("utf-8").decode("latin-1")
    return _VENDOR_UNSAFE.sub(lambda match: f"%{ord(match[0]):02X}", raw)


def _with_caller(tracestate: str, service: str) -> str:
    """``tracestate`` with our entry naming ``service`` leftmost, replacing an older one.

    W3C §3.5: a vendor that modifies its entry moves it to the left; the list stays
    within 32 members and 512 characters by dropping entries from the right. A name
    too long for a tracestate value is not sent at all (no truncated, wrong caller).
    """
    # tracestate is printable ASCII here (_outgoing_tracestate), so no newline: the
    # key names exactly one pair.
    key = f"{tracestate}\n{service}"
    known = _outgoing_with_caller.get(key)
    if known is not None:
        return known
    value = _vendor_value(service)
    if len(value) > _MAX_TRACESTATE_VALUE:
        return tracestate
    others = [
        member
        for member in tracestate.split(",")
        if member and not member.startswith(_VENDOR_PREFIX)
    ]
    members = [_VENDOR_PREFIX + value, *others][:_MAX_TRACESTATE_MEMBERS]
    result = _truncate_tracestate(members)
    _remember(_outgoing_with_caller, key, result)
    return result

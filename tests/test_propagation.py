"""Trace context headers, case by case from the W3C Trace Context Recommendation.

Section numbers refer to https://www.w3.org/TR/2021/REC-trace-context-1-20211123/;
cases marked "L2" come from Level 2 (https://www.w3.org/TR/trace-context-2/ and its
editor's draft, which the harness follows); cases marked "suite" mirror
w3c/trace-context's own conformance tests (test/test.py), which
``tests/test_w3c_harness.py`` also plays end to end through a traced aiohttp service.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator, Mapping

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

import asynctrace
from asynctrace import _ratelimit, context, ids, propagation
from asynctrace.model import Span, SpanContext
from asynctrace.propagation import (
    caller_service,
    extract,
    format_traceparent,
    inject,
    parse_traceparent,
    parse_tracestate,
    trace_headers,
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
OTHER_TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
OTHER_SPAN_ID = "b7ad6b7169203331"
VALID = f"00-{TRACE_ID}-{SPAN_ID}-01"
SUITE_TRACE_ID = "12345678901234567890123456789012"
SUITE_SPAN_ID = "1234567890123456"


def _traceparent(version: str = "00", flags: str = "01", tail: str = "") -> str:
    return f"{version}-{TRACE_ID}-{SPAN_ID}-{flags}{tail}"


# --------------------------------------------------------------------------- traceparent

VALID_TRACEPARENTS = [
    # §3.2.3 example: caller sampled the request.
    pytest.param(VALID, True, id="spec-example-sampled"),
    # §3.2.3 example: caller did not sample it.
    pytest.param(_traceparent(flags="00"), False, id="spec-example-not-sampled"),
    # §3.2.2.5: flags are a bit field; sampled is bit 0 only, other bits are masked.
    pytest.param(_traceparent(flags="09"), True, id="flags-09-sampled-with-other-bit"),
    pytest.param(_traceparent(flags="04"), False, id="flags-04-reserved-bit-only"),
    pytest.param(_traceparent(flags="fc"), False, id="flags-fc-neither-bit"),
    # suite test_traceparent_ows_handling: OWS (space, tab) around the value is ignored.
    pytest.param(" " + VALID, True, id="leading-space"),
    pytest.param("\t" + VALID, True, id="leading-tab"),
    pytest.param(VALID + " ", True, id="trailing-space"),
    pytest.param(VALID + "\t", True, id="trailing-tab"),
    pytest.param("\t " + VALID + " \t", True, id="ows-both-sides"),
    # §3.2.4: a higher version of exactly 55 characters is parsed as version 00.
    pytest.param(_traceparent(version="cc"), True, id="future-version-cc"),
    # §3.2.4: a higher version may carry more fields after a dash (suite 0xcc case).
    pytest.param(
        _traceparent(version="cc", tail="-what-the-future-will-be-like"),
        True,
        id="future-version-with-extra-fields",
    ),
    pytest.param(_traceparent(version="01", tail="-"), True, id="future-version-trailing-dash"),
    # §3.2.2.1: only ff is forbidden; fe is an ordinary future version.
    pytest.param(_traceparent(version="fe", flags="00"), False, id="future-version-fe"),
    # §3.2.4: only the sampled bit is read from a future version's flags.
    pytest.param(_traceparent(version="cc", flags="01"), True, id="future-version-flags-01"),
]


@pytest.mark.parametrize(("value", "is_sampled"), VALID_TRACEPARENTS)
def test_valid_traceparent_is_parsed(value: str, is_sampled: bool) -> None:
    assert parse_traceparent(value) == SpanContext(TRACE_ID, SPAN_ID, is_sampled, "")


TRACE_FLAGS = [
    # L2 §3.2.2.5: bit 0 is sampled, bit 1 (0x02) the random trace-id flag; each is
    # read as a bit, never by comparing the whole byte.
    pytest.param("00", False, False, id="00-neither"),
    pytest.param("01", True, False, id="01-sampled"),
    pytest.param("02", False, True, id="02-random"),
    pytest.param("03", True, True, id="03-sampled-and-random"),
    pytest.param("06", False, True, id="06-random-and-reserved"),
    pytest.param("0b", True, True, id="0b-sampled-random-reserved"),
    pytest.param("fe", False, True, id="fe-all-but-sampled"),
    pytest.param("fd", True, False, id="fd-all-but-random"),
    pytest.param("ff", True, True, id="ff-all"),
]


@pytest.mark.parametrize(("flags", "is_sampled", "is_random"), TRACE_FLAGS)
def test_trace_flags_are_read_bit_by_bit(flags: str, is_sampled: bool, is_random: bool) -> None:
    expected = SpanContext(TRACE_ID, SPAN_ID, is_sampled, "", is_random)
    assert parse_traceparent(_traceparent(flags=flags)) == expected
    assert extract({"traceparent": _traceparent(flags=flags)}) == expected
    # L2 §3.2.4: a future version's flags are read the same way.
    assert parse_traceparent(_traceparent(version="cc", flags=flags, tail="-x")) == expected


@pytest.mark.parametrize(("flags", "is_sampled", "is_random"), TRACE_FLAGS)
def test_outgoing_flags_keep_sampled_and_random_and_zero_the_rest(
    flags: str, is_sampled: bool, is_random: bool
) -> None:
    # L2: the random flag MUST be kept (set or unset) on every outgoing traceparent
    # with the same trace-id; reserved bits MUST be zero.
    parent = parse_traceparent(_traceparent(flags=flags))
    assert parent is not None
    expected = f"0{int(is_sampled) | int(is_random) << 1}"
    assert trace_headers(parent)["traceparent"] == _traceparent(flags=expected)


@pytest.mark.parametrize("flags", ["00", "01", "02", "03"])
async def test_incoming_flags_are_kept_on_every_descendant(tracer: object, flags: str) -> None:
    # L2: set or unset, the incoming random flag is what every outgoing traceparent of
    # the trace carries: the server span, its children, tasks and threads.
    parent = extract({"traceparent": _traceparent(flags=flags)})
    with asynctrace.span("GET /", kind="server", parent=parent) as server:
        with asynctrace.span("child"):
            seen = [trace_headers(server), trace_headers()]

        async def in_task() -> dict[str, str]:
            with asynctrace.span("task"):
                return trace_headers()

        seen += await asyncio.gather(in_task(), asyncio.to_thread(trace_headers))
    assert [headers["traceparent"][:36] for headers in seen] == [f"00-{TRACE_ID}-"] * 4
    assert [headers["traceparent"][-3:] for headers in seen] == [f"-{flags}"] * 4


async def test_traces_we_start_carry_the_random_flag(tracer: object) -> None:
    # L2: our trace ids are drawn at random (ids.py), so the flag SHOULD be set.
    with asynctrace.span("root") as root:
        assert trace_headers()["traceparent"].endswith("-03")
    assert root.is_random
    unsampled = SpanContext(TRACE_ID, SPAN_ID, False, "", True)
    with asynctrace.span("continued", parent=unsampled):
        assert trace_headers()["traceparent"].endswith("-02")


def test_a_hand_made_context_or_seed_header_claims_no_random_flag() -> None:
    # X-Trace-ID comes from tracers that may not draw ids at random: unset is safe.
    seed = extract({"X-Trace-ID": TRACE_ID, "X-Span-ID": SPAN_ID})
    assert seed == SpanContext(TRACE_ID, SPAN_ID, True, "", False)
    assert trace_headers(seed)["traceparent"] == VALID
    assert format_traceparent(TRACE_ID, SPAN_ID, is_sampled=False, is_random=True).endswith("-02")


INVALID_TRACEPARENTS = [
    # §3.2.2.1: version ff is invalid.
    pytest.param(_traceparent(version="ff"), id="version-ff"),
    # §3.2.2.1: version is 2 lowercase hex digits (HEXDIGLC).
    pytest.param(_traceparent(version="0A"), id="version-uppercase"),
    pytest.param(_traceparent(version="AA"), id="version-uppercase-future"),
    # suite test_traceparent_version_illegal_characters.
    pytest.param(_traceparent(version=".0"), id="version-illegal-char-first"),
    pytest.param(_traceparent(version="0."), id="version-illegal-char-second"),
    # suite test_traceparent_version_too_long / too_short.
    pytest.param(_traceparent(version="000"), id="version-three-digits"),
    pytest.param(_traceparent(version="0000"), id="version-four-digits"),
    pytest.param(_traceparent(version="0"), id="version-one-digit"),
    # §3.2.2.2 + suite test_traceparent_version_0x00: version 00 is exactly 55 chars.
    pytest.param(_traceparent(tail="."), id="version-00-trailing-dot"),
    pytest.param(_traceparent(tail="-what-the-future-will-be-like"), id="version-00-extra-field"),
    pytest.param(_traceparent(tail="-"), id="version-00-trailing-dash"),
    # §3.2.4: a longer future version needs a dash right after the flags (suite 0xcc).
    pytest.param(_traceparent(version="cc", tail=".what-the-future"), id="future-version-no-dash"),
    # §3.2.4: a future version shorter than 55 characters is not parsed.
    pytest.param(f"cc-{TRACE_ID}-{SPAN_ID}-1", id="future-version-too-short"),
    pytest.param(f"cc-{TRACE_ID}-{SPAN_ID}", id="future-version-no-flags"),
    # §3.2.4: a future version's fields are still lowercase hex.
    pytest.param(f"cc-{TRACE_ID.upper()}-{SPAN_ID}-01", id="future-version-uppercase-trace-id"),
    # §3.2.2.3: an all-zero trace-id is invalid.
    pytest.param(f"00-{'0' * 32}-{SPAN_ID}-01", id="trace-id-all-zero"),
    pytest.param(f"cc-{'0' * 32}-{SPAN_ID}-01", id="future-version-trace-id-all-zero"),
    # §3.2.2.3: trace-id is 32 lowercase hex; uppercase is a non-allowed character.
    pytest.param(f"00-{TRACE_ID.upper()}-{SPAN_ID}-01", id="trace-id-uppercase"),
    pytest.param(f"00-4BF92f3577b34da6a3ce929d0e0e4736-{SPAN_ID}-01", id="trace-id-mixed-case"),
    # suite test_traceparent_trace_id_illegal_characters / too_long / too_short.
    pytest.param(f"00-.{SUITE_TRACE_ID[1:]}-{SUITE_SPAN_ID}-01", id="trace-id-leading-dot"),
    pytest.param(f"00-{SUITE_TRACE_ID[:-1]}.-{SUITE_SPAN_ID}-01", id="trace-id-trailing-dot"),
    pytest.param(f"00-{SUITE_TRACE_ID}3-{SUITE_SPAN_ID}-01", id="trace-id-33-digits"),
    pytest.param(f"00-{SUITE_TRACE_ID[:-1]}-{SUITE_SPAN_ID}-01", id="trace-id-31-digits"),
    pytest.param(f"00-{TRACE_ID[:16]}-{TRACE_ID[16:]}-{SPAN_ID}-01", id="trace-id-with-dash"),
    # §3.2.2.4: an all-zero parent-id is invalid.
    pytest.param(f"00-{TRACE_ID}-{'0' * 16}-01", id="parent-id-all-zero"),
    # §3.2.2.4: parent-id with non-lowercase hex MUST be ignored.
    pytest.param(f"00-{TRACE_ID}-{SPAN_ID.upper()}-01", id="parent-id-uppercase"),
    # suite test_traceparent_parent_id_illegal_characters / too_long / too_short.
    pytest.param(f"00-{SUITE_TRACE_ID}-.{SUITE_SPAN_ID[1:]}-01", id="parent-id-leading-dot"),
    pytest.param(f"00-{SUITE_TRACE_ID}-{SUITE_SPAN_ID[:-1]}.-01", id="parent-id-trailing-dot"),
    pytest.param(f"00-{SUITE_TRACE_ID}-{SUITE_SPAN_ID}7-01", id="parent-id-17-digits"),
    pytest.param(f"00-{SUITE_TRACE_ID}-{SUITE_SPAN_ID[:-1]}-01", id="parent-id-15-digits"),
    # §3.2.2.5 + suite test_traceparent_trace_flags_*: flags are 2 lowercase hex.
    pytest.param(_traceparent(flags=".0"), id="flags-leading-dot"),
    pytest.param(_traceparent(flags="0."), id="flags-trailing-dot"),
    pytest.param(_traceparent(flags="001"), id="flags-three-digits"),
    pytest.param(_traceparent(flags="1"), id="flags-one-digit"),
    pytest.param(_traceparent(flags="0A"), id="flags-uppercase"),
    # §3.2.2: the dash is the only delimiter.
    pytest.param(f"00_{TRACE_ID}_{SPAN_ID}_01", id="underscore-delimiters"),
    pytest.param(f"00{TRACE_ID}{SPAN_ID}01---", id="dashes-in-wrong-places"),
    pytest.param(f"00-{TRACE_ID}-{SPAN_ID}01", id="missing-dash"),
    # Only space and tab are OWS (RFC 7230 §3.2.3); other whitespace is content.
    pytest.param("\n" + VALID, id="leading-newline"),
    pytest.param(VALID + "\r\n", id="trailing-crlf"),
    pytest.param("\u00a0" + VALID, id="leading-no-break-space"),
    pytest.param(VALID.replace("a", "\uff41"), id="fullwidth-letters"),
    pytest.param("", id="empty"),
    pytest.param(" \t ", id="whitespace-only"),
    pytest.param("not a traceparent at all", id="garbage"),
    pytest.param(",".join([VALID, VALID]), id="two-values-comma-joined"),
    # §3.2.4: "only disallow prohibitively large headers".
    pytest.param(_traceparent(version="cc", tail="-" + "x" * 10_000_000), id="huge"),
]


@pytest.mark.parametrize("value", INVALID_TRACEPARENTS)
def test_invalid_traceparent_is_rejected(value: str) -> None:
    assert parse_traceparent(value) is None


@pytest.mark.parametrize("value", [None, b"00-" + TRACE_ID.encode(), 55, 5.5, [VALID], object()])
def test_traceparent_of_wrong_type_is_rejected_without_raising(value: object) -> None:
    assert parse_traceparent(value) is None  # type: ignore[arg-type]  # runtime garbage on purpose


def test_format_traceparent_writes_version_00_with_sampled_flag_only() -> None:
    assert format_traceparent(TRACE_ID, SPAN_ID, is_sampled=True) == VALID
    assert format_traceparent(TRACE_ID, SPAN_ID, is_sampled=False) == _traceparent(flags="00")


def test_future_version_is_rewritten_as_version_00() -> None:
    # §3.2.4: the new traceparent uses the highest version known to us, 00.
    parent = parse_traceparent(_traceparent(version="cc", tail="-extra"))
    assert parent is not None
    out = trace_headers(parent)
    assert out["traceparent"] == VALID


# ---------------------------------------------------------------------------- tracestate

_ALL_KEY_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_-*/"
# §3.3.1.3.2: printable ASCII 0x20-0x7E except "," and "=", here starting with a space.
_ALL_VALUE_CHARS = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) not in ",=")


def _members(count: int) -> list[str]:
    return [f"bar{index:02}={index:02}" for index in range(1, count + 1)]


VALID_TRACESTATES = [
    # §3.3.2 example.
    pytest.param(
        "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
        "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
        id="spec-example",
    ),
    # §3.3.1.1: spaces and tabs around list-members are ignored (suite ows_handling).
    pytest.param("foo=1 \t , \t bar=2, \t baz=3", "foo=1,bar=2,baz=3", id="ows-between"),
    pytest.param("\t foo=1 \t", "foo=1", id="ows-around"),
    # §3.3.1.3.2: a value may start with spaces; they are part of it.
    pytest.param("foo=  1", "foo=  1", id="value-leading-spaces-kept"),
    # §3.3.1.1: empty and whitespace-only list members are allowed.
    pytest.param("foo=1,,bar=2, ,\t,", "foo=1,bar=2", id="empty-members-dropped"),
    pytest.param(",foo=1", "foo=1", id="leading-empty-member"),
    # §3.3.1.1: vendors MUST accept empty tracestate headers.
    pytest.param("", "", id="empty-header"),
    pytest.param(" , ,", "", id="only-empty-members"),
    # §3.3.1.3.1: multi-tenant keys, tenant-id may begin with a digit.
    pytest.param("fw529a3039@dt=x", "fw529a3039@dt=x", id="multi-tenant-key"),
    pytest.param("1a2b@dt=x", "1a2b@dt=x", id="tenant-id-starts-with-digit"),
    pytest.param("9@a=x", "9@a=x", id="shortest-multi-tenant-key"),
    # L2 key = (lcalpha / DIGIT) 0*255 keychar, "@" being a keychar: any key starts
    # with a letter or digit, and "@" may stand anywhere after the first character
    # (suite test_tracestate_key_illegal_vendor_format, after w3c/trace-context#584).
    pytest.param("1abc=1", "1abc=1", id="L2-key-starts-with-digit"),
    pytest.param("7=1", "7=1", id="L2-one-digit-key"),
    pytest.param("foo@=1,bar=2", "foo@=1,bar=2", id="L2-key-ends-with-at"),
    pytest.param("foo@@bar=1,bar=2", "foo@@bar=1,bar=2", id="L2-double-at"),
    pytest.param("foo@bar@baz=1,bar=2", "foo@bar@baz=1,bar=2", id="L2-two-ats"),
    pytest.param("foo@1bar=1", "foo@1bar=1", id="L2-digit-after-at"),
    # suite test_tracestate_key_length_limit: at most 256 characters in all, wherever
    # the "@" is (Level 1's 241 + 14 split no longer applies).
    pytest.param("z" * 256 + "=1", "z" * 256 + "=1", id="simple-key-256"),
    pytest.param(
        "foo=1," + "t" * 241 + "@" + "v" * 14 + "=1",
        "foo=1," + "t" * 241 + "@" + "v" * 14 + "=1",
        id="multi-tenant-key-241-at-14",
    ),
    pytest.param("foo=1," + "t" * 242 + "@v=1", "foo=1," + "t" * 242 + "@v=1", id="L2-tenant-242"),
    pytest.param("foo=1,t@" + "v" * 15 + "=1", "foo=1,t@" + "v" * 15 + "=1", id="L2-system-15"),
    pytest.param(
        "t" * 128 + "@" + "v" * 127 + "=1", "t" * 128 + "@" + "v" * 127 + "=1", id="L2-at-key-256"
    ),
    # L2: vendors MAY discard duplicate keys they did not make; the header stays
    # valid and the first (leftmost) entry of a key is kept (suite duplicated_keys).
    pytest.param("foo=1,foo=1", "foo=1", id="L2-duplicate-key-same-value"),
    pytest.param("foo=1,foo=2", "foo=1", id="L2-duplicate-key-other-value"),
    pytest.param("foo=1,bar=2,foo=3,baz=4", "foo=1,bar=2,baz=4", id="L2-duplicate-in-middle"),
    # suite test_tracestate_all_allowed_characters.
    pytest.param(
        f"{_ALL_KEY_CHARS}={_ALL_VALUE_CHARS}",
        f"{_ALL_KEY_CHARS}={_ALL_VALUE_CHARS}",
        id="all-allowed-characters",
    ),
    pytest.param(
        f"a{_ALL_KEY_CHARS}@a-z0-9_-*/=v",
        f"a{_ALL_KEY_CHARS}@a-z0-9_-*/=v",
        id="all-allowed-multi-tenant",
    ),
    # §3.3.1.3.2: values up to 256 characters.
    pytest.param("k=" + "v" * 256, "k=" + "v" * 256, id="value-256"),
    # §3.3.1.2: up to 32 list-members.
    pytest.param(",".join(_members(32)), ",".join(_members(32)), id="32-members"),
    pytest.param(",,".join(_members(32)), ",".join(_members(32)), id="32-members-and-empty-ones"),
]


@pytest.mark.parametrize(("header", "expected"), VALID_TRACESTATES)
def test_valid_tracestate_is_passed_on_normalised(header: str, expected: str) -> None:
    assert parse_tracestate(header) == expected


INVALID_TRACESTATES = [
    # §3.3.1.3.1: keys are lowercase.
    pytest.param("FOO=1", id="uppercase-key"),
    # suite test_tracestate_key_illegal_characters.
    pytest.param("foo =1", id="space-before-equals"),
    pytest.param("foo.bar=1", id="dot-in-key"),
    # L2: a key starts with a lowercase letter or a digit.
    pytest.param("_abc=1", id="key-starts-with-underscore"),
    pytest.param("*abc=1", id="key-starts-with-star"),
    # suite test_tracestate_key_illegal_vendor_format: one bad member drops all.
    pytest.param("@foo=1,bar=2", id="key-starts-with-at"),
    pytest.param("@=1", id="key-is-at"),
    pytest.param("foo@Bar=1", id="uppercase-after-at"),
    # suite test_tracestate_key_length_limit: 257 characters, with or without "@".
    pytest.param("foo=1," + "z" * 257 + "=1", id="simple-key-257"),
    pytest.param("foo=1," + "t" * 128 + "@" + "v" * 128 + "=1", id="at-key-257"),
    # suite test_tracestate_value_illegal_characters.
    pytest.param("foo=bar=baz", id="equals-in-value"),
    pytest.param("foo=,bar=3", id="empty-value"),
    pytest.param("foo=   ,bar=3", id="whitespace-only-value"),
    pytest.param("foo", id="no-equals"),
    pytest.param("=1", id="empty-key"),
    # §3.3.1.3.2: printable ASCII only; tabs, newlines, DEL and non-ASCII are excluded.
    pytest.param("foo=a\tb", id="tab-in-value"),
    pytest.param("foo=a\r\nx-evil: 1", id="crlf-in-value"),
    pytest.param("foo=a\x7fb", id="del-in-value"),
    pytest.param("foo=caf\u00e9", id="non-ascii-value"),
    pytest.param("k=" + "v" * 257, id="value-257"),
    # A duplicate does not excuse a malformed member elsewhere.
    pytest.param("foo=1,foo=1,Bar=2", id="duplicate-and-malformed"),
    # §3.3.1.2 + suite test_tracestate_member_count_limit: at most 32 members.
    pytest.param(",".join(_members(33)), id="33-members"),
    # Duplicates are members of the list as sent: 33 of them are too many.
    pytest.param(",".join([*_members(32), "bar01=01"]), id="33-members-one-duplicate"),
    # Caps against hostile input, checked before any parsing.
    pytest.param("foo=1" + "," * 1000, id="too-many-empty-members"),
    pytest.param("foo=" + "v" * 1_000_000, id="huge"),
]


@pytest.mark.parametrize("header", INVALID_TRACESTATES)
def test_invalid_tracestate_is_dropped_whole(header: str) -> None:
    assert parse_tracestate(header) == ""


def test_tracestate_header_lines_are_combined_in_order() -> None:
    # §3.3.1.1 + suite test_tracestate_multiple_headers_different_keys.
    lines = ["foo=1,bar=2", "rojo=1,congo=2", "baz=3"]
    assert parse_tracestate(lines) == "foo=1,bar=2,rojo=1,congo=2,baz=3"


def test_empty_tracestate_line_among_others_is_ignored() -> None:
    # suite test_tracestate_empty_header.
    assert parse_tracestate(["foo=1", ""]) == "foo=1"
    assert parse_tracestate(["", "foo=1"]) == "foo=1"


def test_duplicate_key_across_tracestate_lines_keeps_the_first_entry() -> None:
    # suite test_tracestate_duplicated_keys, split over two header lines: the
    # combined header is one list (RFC 9110 §5.3), its leftmost entry of a key wins.
    assert parse_tracestate(["foo=1", "foo=2"]) == "foo=1"
    assert parse_tracestate(["foo=1", "foo=1"]) == "foo=1"
    assert parse_tracestate(["foo=1,bar=2", "bar=3,baz=4"]) == "foo=1,bar=2,baz=4"


def test_33_members_across_tracestate_lines_drop_the_header() -> None:
    # suite test_tracestate_member_count_limit: 32 over four lines pass, 33 do not.
    members = _members(33)
    lines_32 = [",".join(members[0:10]), ",".join(members[10:20]), ",".join(members[20:32])]
    assert parse_tracestate(lines_32) == ",".join(members[:32])
    assert parse_tracestate([*lines_32, members[32]]) == ""


@pytest.mark.parametrize(
    "values", [None, b"foo=1", [b"foo=1"], ["foo=1", None], 42, iter(["foo=1"])]
)
def test_tracestate_of_wrong_type_is_dropped_without_raising(values: object) -> None:
    assert parse_tracestate(values) == ""  # type: ignore[arg-type]  # runtime garbage on purpose


def test_long_tracestate_drops_entries_from_the_end_to_fit_512_characters() -> None:
    # §3.3.1.5: truncate whole entries, from the end.
    members = [f"k{index}=" + "v" * 67 for index in range(8)]  # 70 characters each
    assert len(",".join(members)) == 567
    assert parse_tracestate(",".join(members)) == ",".join(members[:7])


def test_long_tracestate_drops_entries_over_128_characters_first() -> None:
    # §3.3.1.5: entries larger than 128 characters SHOULD be removed first.
    small = [f"s{index}=" + "v" * 60 for index in range(6)]  # 63 characters each
    big = "big=" + "v" * 200
    header = ",".join([small[0], big, *small[1:]])
    assert len(header) > 512
    assert parse_tracestate(header) == ",".join(small)


def test_tracestate_of_exactly_512_characters_is_kept_whole() -> None:
    members = [f"k{index}=" + "v" * 60 for index in range(8)]  # 8 * 63 + 7 = 511
    members[-1] += "v"
    header = ",".join(members)
    assert len(header) == 512
    assert parse_tracestate(header) == header


# ----------------------------------------------------------------------------- extract


def test_extract_reads_traceparent_and_its_tracestate() -> None:
    headers = {"traceparent": VALID, "tracestate": "rojo=1,congo=2"}
    assert extract(headers) == SpanContext(TRACE_ID, SPAN_ID, True, "rojo=1,congo=2")


@pytest.mark.parametrize("name", ["traceparent", "TraceParent", "TRACEPARENT", "TrAcEpArEnT"])
def test_extract_accepts_header_names_in_any_case(name: str) -> None:
    # §3.2.1/§3.3.1: vendors MUST expect the header name in any case.
    headers = {name: VALID, "TrAcEsTaTe": "foo=1"}
    assert extract(headers) == SpanContext(TRACE_ID, SPAN_ID, True, "foo=1")


@pytest.mark.parametrize("name", ["trace-parent", "trace.parent", "trace_parent"])
def test_extract_ignores_misspelt_traceparent(name: str) -> None:
    # suite test_traceparent_header_name.
    assert extract({name: VALID}) is None


def test_extract_reads_aiohttp_multidict_headers() -> None:
    headers = CIMultiDictProxy(
        CIMultiDict([("Host", "example"), ("TraceParent", VALID), ("TraceState", "foo=1")])
    )
    assert extract(headers) == SpanContext(TRACE_ID, SPAN_ID, True, "foo=1")


def test_extract_combines_repeated_tracestate_lines() -> None:
    headers = CIMultiDict(
        [("traceparent", VALID), ("tracestate", "foo=1"), ("TraceState", "bar=2")]
    )
    assert extract(headers) == SpanContext(TRACE_ID, SPAN_ID, True, "foo=1,bar=2")


def test_extract_treats_differing_traceparent_lines_as_invalid() -> None:
    # suite test_traceparent_duplicated: two traceparent headers restart the trace.
    first = f"00-{SUITE_TRACE_ID[:-1]}1-{SUITE_SPAN_ID}-01"
    second = f"00-{SUITE_TRACE_ID}-{SUITE_SPAN_ID}-01"
    assert extract(CIMultiDict([("traceparent", first), ("traceparent", second)])) is None
    assert extract({"traceparent": first, "Traceparent": second}) is None


def test_extract_accepts_identical_repeated_traceparent_lines() -> None:
    headers = CIMultiDict([("traceparent", VALID), ("traceparent", VALID)])
    assert extract(headers) == SpanContext(TRACE_ID, SPAN_ID, True, "")


def test_invalid_tracestate_does_not_invalidate_traceparent() -> None:
    # §3.3: failure to parse tracestate MUST NOT affect the parsing of traceparent.
    assert extract({"traceparent": VALID, "tracestate": "foo=1,FOO=2"}) == SpanContext(
        TRACE_ID, SPAN_ID, True, ""
    )
    assert extract({"traceparent": VALID, "tracestate": b"foo=1"}) == SpanContext(  # type: ignore[dict-item]  # bytes on purpose
        TRACE_ID, SPAN_ID, True, ""
    )


def test_tracestate_without_valid_traceparent_is_discarded() -> None:
    # §3.3: if traceparent failed to parse, tracestate MUST NOT be parsed (§4.2 step 3).
    headers = {"traceparent": "garbage", "tracestate": "foo=1", "X-Trace-ID": TRACE_ID}
    assert extract(headers) == SpanContext(TRACE_ID, None, True, "")
    assert extract({"tracestate": "foo=1"}) is None


def test_extract_keeps_the_unsampled_flag() -> None:
    assert extract({"traceparent": _traceparent(flags="00")}) == SpanContext(
        TRACE_ID, SPAN_ID, False, ""
    )


SEED_HEADERS = [
    # DESIGN.md: X-Trace-ID is accepted in either case and stored lowercase.
    pytest.param({"X-Trace-ID": TRACE_ID}, SpanContext(TRACE_ID, None), id="trace-id-only"),
    pytest.param(
        {"X-Trace-ID": TRACE_ID.upper()}, SpanContext(TRACE_ID, None), id="trace-id-upper"
    ),
    pytest.param(
        {"x-trace-id": "4BF92f3577B34DA6a3ce929d0e0e4736"}, SpanContext(TRACE_ID, None), id="mixed"
    ),
    pytest.param(
        {"X-TRACE-ID": TRACE_ID, "x-span-id": SPAN_ID.upper()},
        SpanContext(TRACE_ID, SPAN_ID),
        id="span-id-upper-stored-lower",
    ),
    pytest.param(
        {"X-Trace-ID": f" {TRACE_ID}\t", "X-Span-ID": f"\t{SPAN_ID} "},
        SpanContext(TRACE_ID, SPAN_ID),
        id="ows-around-ids",
    ),
    # A missing, empty or invalid X-Span-ID leaves span_id None; the trace id still counts.
    pytest.param(
        {"X-Trace-ID": TRACE_ID, "X-Span-ID": ""}, SpanContext(TRACE_ID, None), id="empty-span-id"
    ),
    pytest.param(
        {"X-Trace-ID": TRACE_ID, "X-Span-ID": "0" * 16},
        SpanContext(TRACE_ID, None),
        id="zero-span-id",
    ),
    pytest.param(
        {"X-Trace-ID": TRACE_ID, "X-Span-ID": SPAN_ID + "0"},
        SpanContext(TRACE_ID, None),
        id="long-span-id",
    ),
    pytest.param(
        {"X-Trace-ID": TRACE_ID, "X-Span-ID": "zz" * 8},
        SpanContext(TRACE_ID, None),
        id="non-hex-span-id",
    ),
    pytest.param(
        {"X-Trace-ID": TRACE_ID, "X-Span-ID": f"{SPAN_ID}\r\nx: 1"},
        SpanContext(TRACE_ID, None),
        id="crlf-span-id",
    ),
    # An invalid X-Trace-ID means no parent at all.
    pytest.param({"X-Trace-ID": TRACE_ID[:-1]}, None, id="trace-id-31-digits"),
    pytest.param({"X-Trace-ID": TRACE_ID + "0"}, None, id="trace-id-33-digits"),
    pytest.param({"X-Trace-ID": "0" * 32}, None, id="trace-id-all-zero"),
    pytest.param({"X-Trace-ID": "g" * 32}, None, id="trace-id-non-hex"),
    pytest.param({"X-Trace-ID": ""}, None, id="trace-id-empty"),
    pytest.param({"X-Trace-ID": "\uff10" * 32}, None, id="trace-id-fullwidth-digits"),
    pytest.param({"X-Trace-ID": "\u212a" + TRACE_ID[1:]}, None, id="trace-id-kelvin-sign"),
    pytest.param({"X-Trace-ID": TRACE_ID * 100_000}, None, id="trace-id-huge"),
    pytest.param({"X-Span-ID": SPAN_ID}, None, id="span-id-without-trace-id"),
    pytest.param({}, None, id="no-headers"),
]


@pytest.mark.parametrize(("headers", "expected"), SEED_HEADERS)
def test_extract_reads_seed_headers(
    headers: Mapping[str, str], expected: SpanContext | None
) -> None:
    assert extract(headers) == expected


def test_differing_repeated_x_trace_id_lines_are_invalid() -> None:
    headers = CIMultiDict([("X-Trace-ID", TRACE_ID), ("X-Trace-ID", OTHER_TRACE_ID)])
    assert extract(headers) is None


def test_valid_traceparent_wins_over_x_trace_id() -> None:
    headers = {"X-Trace-ID": OTHER_TRACE_ID, "X-Span-ID": OTHER_SPAN_ID, "traceparent": VALID}
    assert extract(headers) == SpanContext(TRACE_ID, SPAN_ID, True, "")


@pytest.mark.parametrize(
    "traceparent", [f"00-{'0' * 32}-{SPAN_ID}-01", VALID.upper(), "", VALID + "x"]
)
def test_invalid_traceparent_falls_back_to_x_trace_id(traceparent: str) -> None:
    headers = {"traceparent": traceparent, "X-Trace-ID": OTHER_TRACE_ID, "X-Span-ID": OTHER_SPAN_ID}
    assert extract(headers) == SpanContext(OTHER_TRACE_ID, OTHER_SPAN_ID, True, "")


@pytest.mark.parametrize(
    "headers",
    [
        None,
        42,
        "traceparent",
        b"traceparent",
        [("traceparent", VALID)],
        {"traceparent": None},
        {"traceparent": b"00-" + TRACE_ID.encode()},
        {"traceparent": 7, "X-Trace-ID": 7, "X-Span-ID": 7},
        {b"traceparent": VALID, 1: 2, None: None},
    ],
)
def test_extract_of_garbage_is_none_and_not_an_internal_error(headers: object) -> None:
    errors = _ratelimit.internal_error_count()
    assert extract(headers) is None  # type: ignore[arg-type]  # runtime garbage on purpose
    assert _ratelimit.internal_error_count() == errors


class _ExplodingHeaders(Mapping[str, str]):
    """A mapping whose every read fails, standing in for a broken framework object."""

    def __getitem__(self, key: str) -> str:
        raise RuntimeError("broken mapping")

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("broken mapping")

    def __len__(self) -> int:
        raise RuntimeError("broken mapping")


def test_extract_from_a_failing_mapping_is_counted_not_raised() -> None:
    errors = _ratelimit.internal_error_count()
    assert extract(_ExplodingHeaders()) is None
    assert _ratelimit.internal_error_count() == errors + 1


# ------------------------------------------------------------------------------ inject


def _span(*, is_sampled: bool = True, tracestate: str = "") -> Span:
    return Span(TRACE_ID, SPAN_ID, None, "svc", "op", is_sampled=is_sampled, tracestate=tracestate)


def test_inject_sets_all_four_headers_for_a_span() -> None:
    headers: dict[str, str] = {}
    inject(headers, _span(tracestate="rojo=1"))
    # Our own entry names the calling service, leftmost (§3.5), for the service map.
    assert headers == {
        "traceparent": VALID,
        "tracestate": "asynctrace=svc,rojo=1",
        "X-Trace-ID": TRACE_ID,
        "X-Span-ID": SPAN_ID,
    }


def test_inject_writes_the_unsampled_flag_and_no_empty_tracestate() -> None:
    # §3.3.1.1: vendors SHOULD avoid sending empty tracestate headers.
    headers: dict[str, str] = {}
    inject(headers, SpanContext(TRACE_ID, SPAN_ID, False, ""))
    assert headers == {
        "traceparent": _traceparent(flags="00"),
        "X-Trace-ID": TRACE_ID,
        "X-Span-ID": SPAN_ID,
    }


def test_inject_names_the_calling_service_in_our_tracestate_entry() -> None:
    headers: dict[str, str] = {}
    inject(headers, _span(is_sampled=False))
    assert headers["tracestate"] == "asynctrace=svc"
    assert caller_service(headers["tracestate"]) == "svc"


def test_inject_replaces_an_older_entry_of_ours_and_moves_it_left() -> None:
    headers: dict[str, str] = {}
    inject(headers, _span(tracestate="rojo=1,asynctrace=gateway,congo=2"))
    assert headers["tracestate"] == "asynctrace=svc,rojo=1,congo=2"


def test_our_tracestate_entry_keeps_the_member_limit() -> None:
    members = [f"k{index}=v" for index in range(32)]
    headers: dict[str, str] = {}
    inject(headers, _span(tracestate=",".join(members)))
    assert headers["tracestate"] == ",".join(["asynctrace=svc", *members[:31]])
    assert parse_tracestate(headers["tracestate"]) == headers["tracestate"]


@pytest.mark.parametrize(
    ("service", "believed"),
    [
        ("a b", True),
        ("orders-v2.eu:api/read", True),
        # Sent, but outside the names a receiver believes (see the tests below).
        ("orders, eu=1", False),
        ("münchen %", False),
        ("x" * 200, False),
    ],
)
def test_any_service_name_travels_as_a_valid_tracestate_value(service: str, believed: bool) -> None:
    span = Span(TRACE_ID, SPAN_ID, None, service, "op")
    value = trace_headers(span)["tracestate"]
    assert parse_tracestate(value) == value
    assert caller_service(value) == (service if believed else None)


@pytest.mark.parametrize(
    "name",
    [
        "a",
        "orders",
        "Orders_API-2",
        "billing.eu-west-1",
        "team/checkout:v2",
        "my service",
        "x" * 64,
    ],
)
def test_a_conservative_caller_name_is_believed(name: str) -> None:
    value = "asynctrace=" + name.replace(" ", "%20")
    assert caller_service(value) == name


@pytest.mark.parametrize(
    "encoded",
    [
        "evil%0Aname",  # a newline
        "evil%00",  # NUL
        "tab%09bed",
        "del%7F",
        "esc%1B%5B31m",  # a terminal escape sequence
        "cod%E2%80%AEgpj.exe",  # U+202E RIGHT-TO-LEFT OVERRIDE
        "a%E2%81%A6b",  # U+2066 LEFT-TO-RIGHT ISOLATE
        "zero%E2%80%8Bwidth",  # U+200B
        "m%C3%BCnchen",  # non-ASCII letters
        "%20leading",
        "trailing%20",
        "%20",
        "x" * 65,  # over-long
        "quote%22s",
        "per%25cent",
        "curly{brace}",
        "star*",
    ],
)
def test_an_unsafe_caller_name_names_no_caller(encoded: str) -> None:
    assert caller_service("asynctrace=" + encoded) is None
    assert caller_service("rojo=1,asynctrace=" + encoded + ",congo=2") is None


def test_an_over_long_encoded_caller_entry_is_refused_unread() -> None:
    assert caller_service("asynctrace=" + "%41" * 64) == "A" * 64
    assert caller_service("asynctrace=" + "%41" * 65) is None
    assert caller_service("asynctrace=" + "a" * 250) is None


def test_a_foreign_or_garbled_entry_names_no_caller() -> None:
    assert caller_service("rojo=1") is None
    assert caller_service("asynctrace=%FF") is None


def test_inject_does_not_overwrite_headers_the_caller_set() -> None:
    headers = {"TraceParent": "mine", "x-span-id": "mine too"}
    inject(headers, _span(tracestate="rojo=1"))
    # The caller's traceparent keeps our tracestate out: a tracestate belongs to
    # the traceparent it travels with.
    assert headers == {"TraceParent": "mine", "x-span-id": "mine too", "X-Trace-ID": TRACE_ID}


def test_inject_keeps_the_callers_x_trace_id_pair_together() -> None:
    headers = {"X-TRACE-ID": "theirs"}
    inject(headers, _span())
    assert headers == {
        "X-TRACE-ID": "theirs",
        "traceparent": VALID,
        "tracestate": "asynctrace=svc",
    }


def test_inject_into_a_multidict_respects_existing_names() -> None:
    headers: CIMultiDict[str] = CIMultiDict([("Tracestate", "mine=1")])
    inject(headers, _span(tracestate="rojo=1"))
    assert headers.getall("tracestate") == ["mine=1"]
    assert headers["traceparent"] == VALID
    assert headers["x-trace-id"] == TRACE_ID


def test_inject_of_seed_context_without_span_id_sends_only_x_trace_id() -> None:
    # Without a parent-id there can be no traceparent, so no tracestate either (§4.2).
    headers: dict[str, str] = {}
    inject(headers, SpanContext(TRACE_ID, None, True, "rojo=1"))
    assert headers == {"X-Trace-ID": TRACE_ID}


@pytest.mark.parametrize(
    "parent",
    [
        SpanContext(TRACE_ID + "\r\nX-Evil: 1", SPAN_ID),
        SpanContext("0" * 32, SPAN_ID),
        SpanContext(TRACE_ID.upper(), SPAN_ID),
    ],
)
def test_inject_of_invalid_trace_id_adds_nothing(parent: SpanContext) -> None:
    headers: dict[str, str] = {}
    inject(headers, parent)
    assert headers == {}


def test_inject_never_forwards_a_tracestate_that_could_split_headers() -> None:
    headers: dict[str, str] = {}
    inject(headers, _span(tracestate="rojo=1\r\nX-Evil: 1"))
    assert headers["tracestate"] == "asynctrace=svc"
    assert headers["traceparent"] == VALID


def test_inject_normalises_a_hand_set_oversized_tracestate() -> None:
    members = [f"k{index}=" + "v" * 67 for index in range(8)]  # 567 characters in all
    headers: dict[str, str] = {}
    inject(headers, _span(tracestate=",".join(members)))
    assert headers["tracestate"] == ",".join(["asynctrace=svc", *members[:7]])


def test_inject_outside_a_span_adds_nothing() -> None:
    headers = {"Accept": "*/*"}
    inject(headers)
    assert headers == {"Accept": "*/*"}


def test_inject_into_something_that_is_not_a_mapping_is_counted_not_raised() -> None:
    errors = _ratelimit.internal_error_count()
    inject(None, _span())  # type: ignore[arg-type]  # runtime garbage on purpose
    assert _ratelimit.internal_error_count() == errors + 1


def test_inject_uses_the_current_span() -> None:
    with context.span("outgoing call") as current:
        headers: dict[str, str] = {}
        inject(headers)
    assert headers["traceparent"] == format_traceparent(
        current.trace_id, current.span_id, is_sampled=current.is_sampled, is_random=True
    )
    assert headers["X-Trace-ID"] == current.trace_id
    assert headers["X-Span-ID"] == current.span_id


def test_trace_headers_is_empty_outside_a_span() -> None:
    assert trace_headers() == {}


def test_trace_headers_describe_the_current_span() -> None:
    with context.span("manual call") as current:
        headers = asynctrace.trace_headers()
    assert headers == {
        "traceparent": format_traceparent(
            current.trace_id, current.span_id, is_sampled=current.is_sampled, is_random=True
        ),
        "tracestate": f"asynctrace={current.service}",
        "X-Trace-ID": current.trace_id,
        "X-Span-ID": current.span_id,
    }


def test_trace_headers_returns_a_fresh_dict_each_call() -> None:
    span = _span()
    first = trace_headers(span)
    first["traceparent"] = "changed"
    assert trace_headers(span)["traceparent"] == VALID


async def test_trace_headers_follow_the_current_span_into_tasks() -> None:
    async with context.span("parent") as parent:
        headers = await asyncio.create_task(asyncio.to_thread(trace_headers))
    assert headers["X-Span-ID"] == parent.span_id


# -------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("is_sampled", [True, False])
def test_inject_then_extract_gives_back_the_span_as_parent(is_sampled: bool) -> None:
    span = _span(is_sampled=is_sampled, tracestate="congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
    headers: CIMultiDict[str] = CIMultiDict()
    inject(headers, span)
    assert extract(CIMultiDictProxy(headers)) == SpanContext(
        span.trace_id, span.span_id, is_sampled, f"asynctrace=svc,{span.tracestate}"
    )


def test_extracted_parent_continues_the_trace_in_a_child_span() -> None:
    with context.span("client") as client:
        outgoing = trace_headers()
    parent = extract(outgoing)
    assert parent is not None
    with context.span("server", parent=parent) as server:
        assert server.trace_id == client.trace_id
        assert server.parent_span_id == client.span_id
        assert trace_headers()["X-Trace-ID"] == client.trace_id


# ----------------------------------------------------------------------------- fuzzing

_HEADER_NAMES = st.one_of(
    st.sampled_from(
        ["traceparent", "TraceParent", "tracestate", "TRACESTATE", "X-Trace-ID", "x-span-id"]
    ),
    st.text(max_size=12),
)
_NEAR_TRACEPARENTS = st.builds(
    "".join,
    st.lists(
        st.sampled_from(
            [
                "00",
                "cc",
                "ff",
                "0A",
                "-",
                TRACE_ID,
                "0" * 32,
                SPAN_ID,
                "0" * 16,
                "01",
                "0",
                " ",
                "\t",
                "x",
                TRACE_ID.upper(),
            ]
        ),
        max_size=9,
    ),
)
_HEADER_VALUES = st.one_of(
    st.text(max_size=80),
    st.text(alphabet="0123456789abcdefABCDEF- \t,=@", max_size=80),
    _NEAR_TRACEPARENTS,
    st.binary(max_size=40),
    st.none(),
    st.integers(),
)


def _assert_valid_context(parent: SpanContext | None) -> None:
    if parent is None:
        return
    assert ids.is_valid_trace_id(parent.trace_id)
    assert parent.span_id is None or ids.is_valid_span_id(parent.span_id)
    assert isinstance(parent.is_sampled, bool)
    assert parent.tracestate == "" or parse_tracestate(parent.tracestate) == parent.tracestate


@given(st.dictionaries(_HEADER_NAMES, _HEADER_VALUES, max_size=6))
def test_extract_of_any_plain_headers_never_raises_nor_yields_an_invalid_id(
    headers: dict[str, object],
) -> None:
    errors = _ratelimit.internal_error_count()
    _assert_valid_context(extract(headers))  # type: ignore[arg-type]  # any values on purpose
    assert _ratelimit.internal_error_count() == errors


@given(
    st.lists(
        st.tuples(
            _HEADER_NAMES,
            st.one_of(st.text(max_size=80), _NEAR_TRACEPARENTS),
        ),
        max_size=6,
    )
)
def test_extract_of_any_multidict_headers_never_raises_nor_yields_an_invalid_id(
    lines: list[tuple[str, str]],
) -> None:
    errors = _ratelimit.internal_error_count()
    _assert_valid_context(extract(CIMultiDictProxy(CIMultiDict(lines))))
    assert _ratelimit.internal_error_count() == errors


_REFERENCE_TRACEPARENT = re.compile(
    r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?", re.DOTALL
)


def _reference_parse(value: str) -> SpanContext | None:
    """A second, regex-only reading of §3.2.2/§3.2.4, to compare against."""
    match = _REFERENCE_TRACEPARENT.fullmatch(value.strip(" \t"))
    if match is None or len(value) > 512:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return None
    if trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return SpanContext(trace_id, span_id, int(flags, 16) & 1 == 1, "")


@given(st.one_of(_NEAR_TRACEPARENTS, st.text(max_size=80)))
def test_parse_traceparent_agrees_with_a_reference_reading_of_the_spec(value: str) -> None:
    assert parse_traceparent(value) == _reference_parse(value)


@given(st.lists(st.text(alphabet="abz19_-*/@= \t,\u00e9", max_size=40), max_size=4))
def test_parse_tracestate_output_is_valid_and_stable(lines: list[str]) -> None:
    errors = _ratelimit.internal_error_count()
    result = parse_tracestate(lines)
    assert _ratelimit.internal_error_count() == errors
    assert len(result) <= 512
    assert result.isascii()
    assert parse_tracestate(result) == result
    keys = [member.partition("=")[0] for member in result.split(",") if member]
    assert len(keys) == len(set(keys)) <= 32


# -- parse caches ------------------------------------------------------------------------


@given(st.text(max_size=80))
def test_a_cached_tracestate_reads_as_a_fresh_parse(value: str) -> None:
    headers = {"traceparent": VALID, "tracestate": value}
    first = extract(headers)
    again = extract(headers)  # the second read comes from the cache
    assert first == again
    assert first is not None
    assert first.tracestate == parse_tracestate(value)
    assert caller_service(first.tracestate) == caller_service(first.tracestate)


def test_the_tracestate_caches_stay_bounded_under_ever_new_values() -> None:
    for number in range(3 * propagation._MAX_CACHED_ENTRIES):
        state = f"asynctrace=svc{number},other={number}"
        assert extract({"traceparent": VALID, "tracestate": state}) is not None
        assert caller_service(state) == f"svc{number}"
    assert len(propagation._parsed_tracestates) <= propagation._MAX_CACHED_ENTRIES
    assert len(propagation._callers) <= propagation._MAX_CACHED_ENTRIES


def test_a_tracestate_too_long_to_propagate_is_not_cached() -> None:
    long_state = ",".join(f"k{number}=v" for number in range(31)) + "," + "x=" + "y" * 400
    propagation._parsed_tracestates.clear()
    extract({"traceparent": VALID, "tracestate": long_state})
    assert long_state not in propagation._parsed_tracestates


def test_caller_service_of_a_non_string_is_none() -> None:
    assert caller_service(["asynctrace=web"]) is None  # type: ignore[arg-type]  # on purpose


# The grammar of W3C §3.2.2, as a regular expression: the reference the fast check in
# _traceparent_fields must agree with on every string.
_VERSION_FORMAT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")


_hex = "0123456789abcdef"


@st.composite
def near_traceparents(draw: st.DrawFn) -> str:
    """A version-format traceparent, then up to two characters changed to anything
    (two, so that a dash can move)."""
    fields = [draw(st.text(alphabet=_hex, min_size=size, max_size=size)) for size in (2, 32, 16, 2)]
    value = "-".join(fields)
    for _ in range(draw(st.integers(0, 2))):
        where = draw(st.integers(0, 54))
        odd = draw(st.sampled_from("ABCDEFg-_ \u00e9\u0660\u00ff0a"))
        value = value[:where] + odd + value[where + 1 :]
    return value


@given(near_traceparents())
@example("00-" + "a" * 31 + "-a" + "b" * 16 + "-01")  # the second dash moved left
@example("00-" + "a" * 32 + "-" + "b" * 15 + "-b01")  # the third dash moved left
@example("0-0" + "a" * 32 + "-" + "b" * 16 + "-01")  # the first dash moved left
def test_traceparent_check_agrees_with_the_w3c_grammar(value: str) -> None:
    fields = propagation._traceparent_fields(value)
    by_grammar = (
        _VERSION_FORMAT.fullmatch(value) is not None
        and value[:2] != "ff"
        and value[3:35] != "0" * 32
        and value[36:52] != "0" * 16
    )
    assert (fields is not None) == by_grammar
    if fields is not None:
        flags = int(value[53:55], 16)
        assert fields == (value[3:35], value[36:52], flags & 1 == 1, flags & 2 == 2)


def test_outgoing_tracestate_is_remembered_per_incoming_value_and_service() -> None:
    # Each pair gets its own entry: the same incoming tracestate sent by two services,
    # and by one service again, reads as building it afresh would.
    propagation._outgoing_with_caller.clear()
    incoming = "asynctrace=gateway,other=1"
    parent = SpanContext("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", True, incoming)
    sent = {}
    for service in ("orders", "payment", "orders"):
        with asynctrace.span("call", service=service, parent=parent) as call:
            sent.setdefault(service, []).append(trace_headers(call)["tracestate"])
    assert sent == {
        "orders": ["asynctrace=orders,other=1"] * 2,
        "payment": ["asynctrace=payment,other=1"],
    }
    assert len(propagation._outgoing_with_caller) == 2

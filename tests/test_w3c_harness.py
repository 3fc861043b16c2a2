"""The W3C Trace Context harness's cases, played end to end through a traced service.

w3c/trace-context's ``test/test.py`` sends a request with some trace headers to a
test service (``tests/w3c_service.py``), asks it to call the harness back, and checks
the ``traceparent``/``tracestate`` the callback carries. Here each case of that
harness (Level 1 and Level 2, strict) is one row: the headers sent, and what the
callback must show. The real harness can be run against the same service; see
``tests/w3c_service.py``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from asynctrace.tracer import Tracer
from tests.w3c_service import make_app

TRACE_ID = "12345678901234567890123456789012"
PARENT_ID = "1234567890123456"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
UNSAMPLED = f"00-{TRACE_ID}-{PARENT_ID}-00"
# What a receiver may accept as an outgoing traceparent: version 00, lowercase hex.
_OUTGOING = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")

Headers = list[tuple[str, str]]


@dataclass(frozen=True)
class Sent:
    """The trace context one callback carried."""

    trace_id: str
    parent_id: str
    flags: int
    state: dict[str, str]
    state_text: str


Call = Callable[[Headers, int], Awaitable[list[Sent]]]


@dataclass(frozen=True)
class Case:
    headers: Headers
    continues: bool | None = None
    """True: same trace id, new parent id. False: a new trace. None: not checked."""
    has: dict[str, str] = field(default_factory=dict)
    lacks: tuple[str, ...] = ()
    check: Callable[[Sent], bool] | None = None


def _continues(*headers: tuple[str, str], **kwargs: object) -> Case:
    return Case(list(headers), continues=True, **kwargs)  # type: ignore[arg-type]  # Case's own keywords


def _restarts(*headers: tuple[str, str]) -> Case:
    return Case(list(headers), continues=False)


def _state(*lines: str, **kwargs: object) -> Case:
    headers = [("traceparent", UNSAMPLED), *(("tracestate", line) for line in lines)]
    return Case(headers, continues=True, **kwargs)  # type: ignore[arg-type]  # Case's own keywords


def _bad(value: str) -> Case:
    return _restarts(("traceparent", value))


_MEMBERS = [f"bar{index:02}={index:02}" for index in range(1, 34)]
_LINES_32 = [",".join(_MEMBERS[0:10]), ",".join(_MEMBERS[10:20]), ",".join(_MEMBERS[20:30])]
_KEY_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_-*/"
_VALUE_CHARS = "".join(chr(code) for code in range(0x20, 0x7F) if chr(code) not in ",=")


def _in_order(*members: str) -> Callable[[Sent], bool]:
    def check(sent: Sent) -> bool:
        positions = [sent.state_text.find(member) for member in members]
        return -1 not in positions and positions == sorted(positions)

    return check


CASES = [
    # No trace context: the service starts a trace and sends a valid traceparent.
    pytest.param(Case([]), id="nothing-sent"),
    pytest.param(_continues(("traceparent", TRACEPARENT)), id="traceparent-only"),
    # Two differing traceparent lines are ambiguous: restart.
    pytest.param(
        _restarts(
            ("traceparent", f"00-{TRACE_ID[:-1]}1-{PARENT_ID}-01"), ("traceparent", TRACEPARENT)
        ),
        id="traceparent-twice",
    ),
    # Header names: exact word, any case.
    pytest.param(_restarts(("trace-parent", TRACEPARENT)), id="name-with-dash"),
    pytest.param(_restarts(("trace.parent", TRACEPARENT)), id="name-with-dot"),
    pytest.param(_continues(("TraceParent", TRACEPARENT)), id="name-camel-case"),
    pytest.param(_continues(("TrAcEpArEnT", TRACEPARENT)), id="name-mixed-case"),
    pytest.param(_continues(("TRACEPARENT", TRACEPARENT)), id="name-upper-case"),
    # Version 00 is exactly 55 characters; a future version may be longer after a dash.
    pytest.param(_bad(TRACEPARENT + "."), id="v00-trailing-dot"),
    pytest.param(_bad(TRACEPARENT + "-what-the-future-will-be-like"), id="v00-extra-field"),
    pytest.param(_continues(("traceparent", "cc" + TRACEPARENT[2:])), id="vcc"),
    pytest.param(
        _continues(("traceparent", "cc" + TRACEPARENT[2:] + "-what-the-future-will-be-like")),
        id="vcc-extra-field",
    ),
    pytest.param(_bad("cc" + TRACEPARENT[2:] + ".what-the-future-will-be-like"), id="vcc-no-dash"),
    pytest.param(_bad("ff" + TRACEPARENT[2:]), id="vff"),
    pytest.param(_bad(".0" + TRACEPARENT[2:]), id="version-dot-first"),
    pytest.param(_bad("0." + TRACEPARENT[2:]), id="version-dot-second"),
    pytest.param(_bad("000" + TRACEPARENT[2:]), id="version-3-digits"),
    pytest.param(_bad("0000" + TRACEPARENT[2:]), id="version-4-digits"),
    pytest.param(_bad("0" + TRACEPARENT[2:]), id="version-1-digit"),
    # Ids: lowercase hex of the exact length, never all zeros.
    pytest.param(_bad(f"00-{'0' * 32}-{PARENT_ID}-01"), id="trace-id-zero"),
    pytest.param(_bad(f"00-.{TRACE_ID[1:]}-{PARENT_ID}-01"), id="trace-id-dot-first"),
    pytest.param(_bad(f"00-{TRACE_ID[:-1]}.-{PARENT_ID}-01"), id="trace-id-dot-last"),
    pytest.param(_bad(f"00-{TRACE_ID}3-{PARENT_ID}-01"), id="trace-id-33"),
    pytest.param(_bad(f"00-{TRACE_ID[:-1]}-{PARENT_ID}-01"), id="trace-id-31"),
    pytest.param(_bad(f"00-{TRACE_ID}-{'0' * 16}-01"), id="parent-id-zero"),
    pytest.param(_bad(f"00-{TRACE_ID}-.{PARENT_ID[1:]}-01"), id="parent-id-dot-first"),
    pytest.param(_bad(f"00-{TRACE_ID}-{PARENT_ID[:-1]}.-01"), id="parent-id-dot-last"),
    pytest.param(_bad(f"00-{TRACE_ID}-{PARENT_ID}7-01"), id="parent-id-17"),
    pytest.param(_bad(f"00-{TRACE_ID}-{PARENT_ID[:-1]}-01"), id="parent-id-15"),
    pytest.param(_bad(f"00-{TRACE_ID}-{PARENT_ID}-.0"), id="flags-dot-first"),
    pytest.param(_bad(f"00-{TRACE_ID}-{PARENT_ID}-0."), id="flags-dot-last"),
    pytest.param(_bad(f"00-{TRACE_ID}-{PARENT_ID}-001"), id="flags-3-digits"),
    pytest.param(_bad(f"00-{TRACE_ID}-{PARENT_ID}-1"), id="flags-1-digit"),
    pytest.param(_bad(f"00-ABCDEF{TRACE_ID[6:]}-{PARENT_ID}-01"), id="trace-id-upper"),
    pytest.param(_bad(f"00-{TRACE_ID}-ABCDEF{PARENT_ID[6:]}-01"), id="parent-id-upper"),
    # Spaces and tabs around the value are optional whitespace.
    pytest.param(_continues(("traceparent", " " + TRACEPARENT)), id="ows-space-before"),
    pytest.param(_continues(("traceparent", "\t" + TRACEPARENT)), id="ows-tab-before"),
    pytest.param(_continues(("traceparent", TRACEPARENT + " ")), id="ows-space-after"),
    pytest.param(_continues(("traceparent", TRACEPARENT + "\t")), id="ows-tab-after"),
    pytest.param(_continues(("traceparent", "\t " + TRACEPARENT + " \t")), id="ows-both"),
    # Level 2: the random trace-id flag comes back set on the callback.
    pytest.param(
        _continues(
            ("traceparent", f"00-{TRACE_ID}-{PARENT_ID}-02"), check=lambda sent: sent.flags == 2
        ),
        id="L2-random-flag-propagated",
    ),
    pytest.param(
        _continues(
            ("traceparent", f"00-{TRACE_ID}-{PARENT_ID}-03"), check=lambda sent: sent.flags == 3
        ),
        id="L2-random-and-sampled",
    ),
    pytest.param(
        _continues(("traceparent", TRACEPARENT), check=lambda sent: sent.flags == 1),
        id="L2-random-flag-stays-unset",
    ),
    pytest.param(Case([], check=lambda sent: sent.flags & 2 == 2), id="L2-new-trace-random"),
    # tracestate without traceparent is not read.
    pytest.param(Case([("tracestate", "foo=1,bar=2")], lacks=("foo", "bar")), id="state-alone"),
    pytest.param(_state("foo=1,bar=2", has={"foo": "1", "bar": "2"}), id="state-inherited"),
    pytest.param(
        Case([("traceparent", UNSAMPLED), ("trace-state", "foo=1")], lacks=("foo",)),
        id="state-name-with-dash",
    ),
    pytest.param(
        Case([("traceparent", UNSAMPLED), ("trace.state", "foo=1")], lacks=("foo",)),
        id="state-name-with-dot",
    ),
    pytest.param(
        Case([("traceparent", UNSAMPLED), ("TraceState", "foo=1")], has={"foo": "1"}),
        id="state-name-camel",
    ),
    pytest.param(
        Case([("traceparent", UNSAMPLED), ("TRACESTATE", "foo=1")], has={"foo": "1"}),
        id="state-name-upper",
    ),
    # Empty lines are allowed and ignored; several lines combine in order.
    pytest.param(_state(""), id="state-empty"),
    pytest.param(_state("foo=1", "", has={"foo": "1"}), id="state-then-empty"),
    pytest.param(_state("", "foo=1", has={"foo": "1"}), id="state-empty-then"),
    pytest.param(
        _state(
            "foo=1,bar=2",
            "rojo=1,congo=2",
            "baz=3",
            check=_in_order("foo=1", "bar=2", "rojo=1", "congo=2", "baz=3"),
        ),
        id="state-lines-combined-in-order",
    ),
    # Level 2: a repeated key is not an error; one of its entries is passed on.
    pytest.param(_state("foo=1,foo=1", has={"foo": "1"}), id="L2-duplicate-same"),
    pytest.param(
        _state("foo=1,foo=2", check=lambda sent: sent.state.get("foo") in ("1", "2")),
        id="L2-duplicate-differing",
    ),
    pytest.param(_state("foo=1", "foo=1", has={"foo": "1"}), id="L2-duplicate-lines-same"),
    pytest.param(
        _state("foo=1", "foo=2", check=lambda sent: sent.state.get("foo") in ("1", "2")),
        id="L2-duplicate-lines-differing",
    ),
    # Every allowed character, with and without "@".
    pytest.param(
        _state(f"{_KEY_CHARS}={_VALUE_CHARS}", has={_KEY_CHARS: _VALUE_CHARS}),
        id="state-all-characters",
    ),
    pytest.param(
        _state(
            f"{_KEY_CHARS}@a-z0-9_-*/={_VALUE_CHARS}",
            has={f"{_KEY_CHARS}@a-z0-9_-*/": _VALUE_CHARS},
        ),
        id="state-all-characters-with-at",
    ),
    # OWS around list members.
    pytest.param(
        _state("foo=1 \t , \t bar=2, \t baz=3", has={"foo": "1", "bar": "2", "baz": "3"}),
        id="state-ows-spaces",
    ),
    pytest.param(
        _state("foo=1\t \t,\t \tbar=2,\t \tbaz=3", has={"foo": "1", "bar": "2", "baz": "3"}),
        id="state-ows-tabs",
    ),
    pytest.param(_state(" foo=1", has={"foo": "1"}), id="state-ows-leading-space"),
    pytest.param(_state("\tfoo=1", has={"foo": "1"}), id="state-ows-leading-tab"),
    pytest.param(_state("foo=1 ", has={"foo": "1"}), id="state-ows-trailing-space"),
    pytest.param(_state("foo=1\t", has={"foo": "1"}), id="state-ows-trailing-tab"),
    pytest.param(_state("\t foo=1 \t", has={"foo": "1"}), id="state-ows-both"),
    # Illegal keys and values drop the tracestate, never the traceparent.
    pytest.param(_state("foo =1", lacks=("foo ", "foo")), id="state-key-space"),
    pytest.param(_state("FOO=1", lacks=("FOO",)), id="state-key-upper"),
    pytest.param(_state("foo.bar=1", lacks=("foo.bar",)), id="state-key-dot"),
    pytest.param(_state("foo=bar=baz", lacks=("foo",)), id="state-value-equals"),
    pytest.param(_state("foo=,bar=3", lacks=("foo", "bar")), id="state-value-empty"),
    # Level 2 key grammar: "@" anywhere after the first character.
    pytest.param(_state("foo@=1,bar=2", has={"foo@": "1", "bar": "2"}), id="L2-key-at-end"),
    pytest.param(_state("@foo=1,bar=2", lacks=("@foo", "bar")), id="L2-key-at-start"),
    pytest.param(
        _state("foo@@bar=1,bar=2", has={"foo@@bar": "1", "bar": "2"}), id="L2-key-double-at"
    ),
    pytest.param(
        _state("foo@bar@baz=1,bar=2", has={"foo@bar@baz": "1", "bar": "2"}), id="L2-key-two-ats"
    ),
    # At most 32 members (our own entry then pushes the rightmost one out).
    pytest.param(
        _state(
            *_LINES_32,
            "bar31=31,bar32=32",
            has={"bar01": "01"},
            check=lambda sent: len(sent.state) == 32,
        ),
        id="state-32-members",
    ),
    pytest.param(
        _state(*_LINES_32, "bar31=31,bar32=32,bar33=33", lacks=("bar01",)), id="state-33-members"
    ),
    # Keys of at most 256 characters, wherever an "@" is.
    pytest.param(_state("foo=1", "z" * 256 + "=1", has={"foo": "1", "z" * 256: "1"}), id="key-256"),
    pytest.param(_state("foo=1", "z" * 257 + "=1", lacks=("foo",)), id="key-257"),
    pytest.param(
        _state("foo=1", "t" * 241 + "@" + "v" * 14 + "=1", has={"t" * 241 + "@" + "v" * 14: "1"}),
        id="key-241-at-14",
    ),
    pytest.param(
        _state("foo=1", "t" * 242 + "@v=1", has={"foo": "1", "t" * 242 + "@v": "1"}),
        id="L2-key-242-at-1",
    ),
    pytest.param(
        _state("foo=1", "t@" + "v" * 15 + "=1", has={"foo": "1", "t@" + "v" * 15: "1"}),
        id="L2-key-1-at-15",
    ),
]


@pytest.fixture
async def harness(tracer: Tracer) -> AsyncIterator[Call]:
    """``call(headers, count)``: send ``headers`` to the service, return its callbacks."""
    received: dict[str, list[tuple[str, str]]] = {}

    async def callback(request: web.Request) -> web.Response:
        received[request.match_info["index"]] = list(request.headers.items())
        return web.json_response({})

    harness_app = web.Application()
    harness_app.router.add_post("/callback/{index}", callback)
    async with (
        TestServer(harness_app, host="127.0.0.1") as harness_server,
        TestServer(make_app(), host="127.0.0.1") as service,
        aiohttp.ClientSession() as session,
    ):

        async def call(headers: Headers, count: int = 1) -> list[Sent]:
            received.clear()
            calls = [
                {"url": str(harness_server.make_url(f"/callback/{index}")), "arguments": []}
                for index in range(count)
            ]
            async with session.post(
                service.make_url("/test"), json=calls, headers=list(headers)
            ) as response:
                assert response.status == 200
            return [_read(received[str(index)]) for index in range(count)]

        yield call


def _read(headers: list[tuple[str, str]]) -> Sent:
    """The callback's trace context, read as strictly as the harness reads it."""
    parents = [value for name, value in headers if name.lower() == "traceparent"]
    assert len(parents) == 1, parents
    match = _OUTGOING.fullmatch(parents[0])
    assert match is not None, parents[0]
    trace_id, parent_id, flags = match.groups()
    assert trace_id != "0" * 32
    assert parent_id != "0" * 16
    state_text = ",".join(value for name, value in headers if name.lower() == "tracestate")
    state: dict[str, str] = {}
    for member in re.split(r"[ \t]*,[ \t]*", state_text):
        if member:
            key, equals, value = member.partition("=")
            assert equals, state_text  # what we send is valid
            assert key not in state, state_text
            state[key] = value
    assert len(state) <= 32
    return Sent(trace_id, parent_id, int(flags, 16), state, state_text)


@pytest.mark.parametrize("case", CASES)
async def test_harness_case(harness: Call, case: Case) -> None:
    (sent,) = await harness(case.headers, 1)
    incoming = {
        value.strip(" \t")[3:35].lower()
        for name, value in case.headers
        if name.lower() == "traceparent"
    }
    if case.continues is True:
        assert (sent.trace_id, sent.parent_id != PARENT_ID) == (TRACE_ID, True)
    elif case.continues is False:
        assert sent.trace_id not in incoming | {TRACE_ID}
    for key, value in case.has.items():
        assert sent.state.get(key) == value, sent.state_text
    for key in case.lacks:
        assert key not in sent.state, sent.state_text
    if case.check is not None:
        assert case.check(sent), sent


@pytest.mark.parametrize(
    ("headers", "continues"),
    [
        pytest.param([("traceparent", TRACEPARENT)], True, id="valid-traceparent"),
        pytest.param([], False, id="no-traceparent"),
        pytest.param([("traceparent", f"00-{'0' * 32}-{PARENT_ID}-01")], False, id="invalid"),
    ],
)
async def test_several_callbacks_share_the_trace_with_distinct_parent_ids(
    harness: Call, headers: Headers, continues: bool
) -> None:
    sent = await harness(headers, 3)
    trace_ids = {each.trace_id for each in sent}
    assert len(trace_ids) == 1
    assert (TRACE_ID in trace_ids) is continues
    assert len({each.parent_id for each in sent}) == 3

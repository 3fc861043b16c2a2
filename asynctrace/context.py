"""The active span, carried by a ContextVar: ``span()``, ``traced`` and ``current_span()``.

asyncio copies the context into every task (``create_task``, ``gather``,
``TaskGroup``) and ``asyncio.to_thread`` runs its function in a copy too, so children
find their parent without any help. This module never imports the tracer: the tracer
registers itself as the ``Recorder`` that names services, samples and receives ended
spans.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
from collections import deque
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from contextvars import ContextVar, Token
from time import perf_counter as _perf_counter
from types import TracebackType
from typing import Any, ParamSpec, Protocol, TypeVar, cast, overload

from asynctrace import clock as _clock
from asynctrace._ratelimit import report_internal_error
from asynctrace.ids import new_span_id, new_trace_id, pop_span_id, pop_trace_id
from asynctrace.model import DEFAULT_LIMITS, Limits, Span, SpanContext

__all__ = [
    "UNQUEUED",
    "ActiveSpan",
    "EndedSpans",
    "Recorder",
    "current_span",
    "set_recorder",
    "span",
    "traced",
]

P = ParamSpec("P")
R = TypeVar("R")

_active: ContextVar[Span | None] = ContextVar("asynctrace_active_span", default=None)
_new_span = object.__new__

logger = logging.getLogger("asynctrace")


class EndedSpans(Protocol):
    """The export queue as a span's end sees it: a deque of ended spans and how many
    it may hold before an append needs the queue's own bookkeeping (waking its task,
    keeping its bound). Below ``room`` a sampled span is appended directly, with no
    call; the queue lowers ``room`` to 0 whenever the next append must be seen."""

    spans: deque[Span]
    room: int


class _Unqueued:
    """No room ever: every ended span goes through the recorder's callables."""

    def __init__(self) -> None:
        self.spans: deque[Span] = deque()
        self.room = 0


UNQUEUED: EndedSpans = _Unqueued()


class Recorder(Protocol):
    """What the context layer needs from a tracer: a service name, limits, sampling,
    the queue sampled spans go to, and the callables that receive the ended spans the
    queue has no room for and those of unsampled traces (called from any thread; they
    must not block)."""

    service: str
    limits: Limits
    ended: EndedSpans
    on_end: Callable[[Span], None]
    on_unsampled_end: Callable[[Span], None]

    def should_sample(self) -> bool: ...


def _default_service() -> str:
    return os.environ.get("ASYNCTRACE_SERVICE") or os.environ.get("SERVICE_NAME") or "unknown"


class _Unconfigured:
    """Spans work before ``configure()``; they are just not exported (said once)."""

    limits = DEFAULT_LIMITS
    ended = UNQUEUED

    def __init__(self) -> None:
        self.service = _default_service()
        self._warned = False
        self.on_end: Callable[[Span], None] = self._drop
        self.on_unsampled_end: Callable[[Span], None] = self._drop

    def should_sample(self) -> bool:
        return True

    def _drop(self, span: Span) -> None:
        if not self._warned:
            self._warned = True
            logger.warning(
                "asynctrace: spans are recorded but not exported; call asynctrace.configure()"
            )


_recorder: Recorder = _Unconfigured()


def set_recorder(recorder: Recorder | None) -> None:
    """Route new spans to ``recorder`` (the tracer); ``None`` restores the unconfigured one."""
    global _recorder
    _recorder = recorder if recorder is not None else _Unconfigured()


def current_span() -> Span | None:
    """The span active in this task or thread, or None. Never raises, never blocks."""
    return _active.get()


class ActiveSpan(Span):
    """A span that is also a context manager (``with`` and ``async with``).

    Entering makes it the current span; leaving restores the previous one, records an
    exception (status error, re-raised unchanged) or a cancellation (``cancelled=true``,
    re-raised), and ends it. An ended span goes to the tracer configured when it ends
    (after ``configure()`` replaced a tracer, that is the new one).
    """

    __slots__ = ("_token",)

    _token: Token[Span | None] | None

    def __enter__(self) -> ActiveSpan:
        if self._token is None:  # entering it again must not stack a second token
            self._token = _active.set(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # Both exits inline the context reset, end() and the _hand_off it calls: this
        # runs once per span on the request path, where each call saved is a
        # twentieth of its cost. Keep the three in step.
        token = self._token
        if token is not None:
            self._token = None
            try:  # noqa: SIM105 - contextlib.suppress costs a context manager per span
                _active.reset(token)
            except (ValueError, RuntimeError):
                pass  # ended in another context: see _reset
        if exc is not None:
            _record_exit(self, exc)
        if self._ended:
            return
        self._ended = True
        self.duration = (_perf_counter() - self._start_perf) * 1000.0
        try:
            recorder = _recorder
            if self.is_sampled:
                ended = recorder.ended
                spans = ended.spans
                if len(spans) < ended.room:
                    spans.append(self)
                    return
                recorder.on_end(self)
            else:
                recorder.on_unsampled_end(self)
        except Exception as error:
            report_internal_error("span export hand-off failed", error)

    async def __aenter__(self) -> ActiveSpan:
        if self._token is None:
            self._token = _active.set(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        token = self._token
        if token is not None:
            self._token = None
            try:  # noqa: SIM105
                _active.reset(token)
            except (ValueError, RuntimeError):
                pass
        if exc is not None:
            _record_exit(self, exc)
        if self._ended:
            return
        self._ended = True
        self.duration = (_perf_counter() - self._start_perf) * 1000.0
        try:
            recorder = _recorder
            if self.is_sampled:
                ended = recorder.ended
                spans = ended.spans
                if len(spans) < ended.room:
                    spans.append(self)
                    return
                recorder.on_end(self)
            else:
                recorder.on_unsampled_end(self)
        except Exception as error:
            report_internal_error("span export hand-off failed", error)

    def end(self) -> None:
        """End the span and hand it to the tracer. Idempotent; never raises."""
        if self._ended:
            return
        self._ended = True
        self.duration = (_perf_counter() - self._start_perf) * 1000.0
        _hand_off(self)


def _hand_off(span: Span) -> None:
    """Queue an ended span with the current tracer: appended directly while its queue
    has room, else through the tracer's callables (sampled or not)."""
    try:
        recorder = _recorder
        if span.is_sampled:
            ended = recorder.ended
            spans = ended.spans
            if len(spans) < ended.room:
                spans.append(span)
                return
            recorder.on_end(span)
        else:
            recorder.on_unsampled_end(span)
    except Exception as error:
        report_internal_error("span export hand-off failed", error)


def _reset(token: Token[Span | None]) -> None:
    try:  # noqa: SIM105 - hot path: contextlib.suppress costs a context manager per span
        _active.reset(token)
    except (ValueError, RuntimeError):
        # The span is being ended in another context (an async generator finalised by
        # the loop, a span handed to another task): that context's active span is not
        # ours to touch, and it is not an error worth a log line.
        pass


def _record_exit(span: Span, exc: BaseException) -> None:
    if isinstance(exc, asyncio.CancelledError):
        span.set_tag("cancelled", "true")
    elif isinstance(exc, Exception):
        span.record_exception(exc)


def span(
    operation: str,
    *,
    tags: Mapping[str, object] | None = None,
    kind: str = "internal",
    service: str | None = None,
    parent: SpanContext | None = None,
) -> ActiveSpan:
    """Start a span, a child of the current span (or of ``parent``, a remote caller).

    The span starts when ``span()`` is called; use the result with ``with`` or
    ``async with`` to make it current, or call ``end()`` yourself. Never raises.
    """
    # The hot path of the whole library: attributes are set directly rather than
    # through Span.__init__'s keyword arguments, which cost more than the span itself.
    try:
        recorder = _recorder
        new = _new_span(ActiveSpan)
        if parent is None:
            current = _active.get()
            if current is not None:
                new.trace_id = current.trace_id
                new.parent_span_id = current.span_id
                new.service = service or current.service
                new.is_sampled = current.is_sampled
                new.is_local_root = False
                new.is_random = current.is_random
                new.tracestate = current.tracestate
            else:
                try:
                    new.trace_id = pop_trace_id()
                except IndexError:
                    new.trace_id = new_trace_id()  # refills the pool
                new.parent_span_id = None
                new.service = service or recorder.service
                new.is_sampled = recorder.should_sample()
                new.is_local_root = True
                new.is_random = True  # W3C Level 2: ids.py draws trace ids at random
                new.tracestate = ""
        else:
            new.trace_id = parent.trace_id
            new.parent_span_id = parent.span_id
            new.service = service or recorder.service
            new.is_sampled = parent.is_sampled
            new.is_local_root = True
            new.is_random = parent.is_random
            new.tracestate = parent.tracestate
        try:
            new.span_id = pop_span_id()
        except IndexError:
            new.span_id = new_span_id()  # refills the pool
        new.operation = operation
        new.kind = kind
        new.status = "ok"
        new._tags = None
        new._logs = None
        new.limits = recorder.limits
        new._ended = False
        new._token = None
        new.duration = 0.0
        # One clock read: the wall-clock start is the monotonic one plus clock's offset
        # (clock.wall_ms, inline: a call here is a few percent of a span).
        new._start_perf = start = _perf_counter()
        new.start_time = start * 1000.0 + _clock.offset_ms
        if tags:
            new.set_tags(tags)
        return new
    except Exception as exc:
        report_internal_error("span start failed", exc)
        fallback = ActiveSpan(new_trace_id(), new_span_id(), None, "unknown", str(operation))
        fallback._token = None
        return fallback


@overload
def traced(func: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def traced(
    name: str | None = None,
    /,
    *,
    tags: Mapping[str, object] | None = None,
    kind: str = "internal",
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def traced(
    func_or_name: Callable[P, R] | str | None = None,
    /,
    *,
    tags: Mapping[str, object] | None = None,
    kind: str = "internal",
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """Trace every call of a coroutine function, async generator function or function.

    ``@traced`` names the span after the function's qualified name;
    ``@traced("name", tags=...)`` names it explicitly. A coroutine's span covers the
    awaited call, a generator's the whole iteration (it ends on exhaustion, ``close()``
    or ``aclose()``). The wrapper keeps the function's signature and metadata.
    """
    if callable(func_or_name):
        return _wrap(func_or_name, None, tags, kind)

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        return _wrap(func, func_or_name, tags, kind)

    return decorate


def _wrap(
    func: Callable[P, R],
    name: str | None,
    tags: Mapping[str, object] | None,
    kind: str,
) -> Callable[P, R]:
    operation = name or getattr(func, "__qualname__", None) or repr(func)
    span_tags = dict(tags) if tags else None
    wrapper: Callable[..., Any]

    if inspect.isasyncgenfunction(func):
        wrapper = _async_generator_wrapper(func, operation, span_tags, kind)
    elif inspect.isgeneratorfunction(func):
        wrapper = _generator_wrapper(func, operation, span_tags, kind)
    elif inspect.iscoroutinefunction(func):
        coroutine_function = cast(Callable[..., Any], func)

        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            with span(operation, tags=span_tags, kind=kind):
                return await coroutine_function(*args, **kwargs)

    else:

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with span(operation, tags=span_tags, kind=kind):
                return func(*args, **kwargs)

    return cast(Callable[P, R], functools.wraps(func)(wrapper))


def _async_generator_wrapper(
    func: Callable[..., Any],
    operation: str,
    tags: dict[str, object] | None,
    kind: str,
) -> Callable[..., AsyncGenerator[Any, Any]]:
    async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        inner: AsyncGenerator[Any, Any] = func(*args, **kwargs)
        current = span(operation, tags=tags, kind=kind)
        to_send: Any = None
        to_throw: BaseException | None = None
        try:
            while True:
                # The span is current only while the inner generator runs: setting it
                # across a ``yield`` would leak it into the consumer's context.
                token = _active.set(current)
                try:
                    if to_throw is not None:
                        thrown, to_throw = to_throw, None
                        item = await inner.athrow(thrown)
                    else:
                        item = await inner.asend(to_send)
                except StopAsyncIteration:
                    return
                finally:
                    _reset(token)
                try:
                    to_send = yield item
                except GeneratorExit:
                    raise
                except BaseException as exc:
                    to_throw = exc
        except BaseException as exc:
            if not isinstance(exc, GeneratorExit):
                _record_exit(current, exc)
            raise
        finally:
            token = _active.set(current)
            try:
                await inner.aclose()
            finally:
                _reset(token)
                current.end()

    return wrapper


def _generator_wrapper(
    func: Callable[..., Any],
    operation: str,
    tags: dict[str, object] | None,
    kind: str,
) -> Callable[..., Generator[Any, Any, Any]]:
    def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        inner: Generator[Any, Any, Any] = func(*args, **kwargs)
        current = span(operation, tags=tags, kind=kind)
        to_send: Any = None
        to_throw: BaseException | None = None
        try:
            while True:
                token = _active.set(current)
                try:
                    if to_throw is not None:
                        thrown, to_throw = to_throw, None
                        item = inner.throw(thrown)
                    else:
                        item = inner.send(to_send)
                except StopIteration as stop:
                    return stop.value
                finally:
                    _reset(token)
                try:
                    to_send = yield item
                except GeneratorExit:
                    raise
                except BaseException as exc:
                    to_throw = exc
        except BaseException as exc:
            if not isinstance(exc, GeneratorExit):
                _record_exit(current, exc)
            raise
        finally:
            token = _active.set(current)
            try:
                inner.close()
            finally:
                _reset(token)
                current.end()

    return wrapper

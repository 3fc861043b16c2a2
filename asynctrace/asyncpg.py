"""Tracing for asyncpg: one ``client`` span per query of an instrumented pool or connection.

``asynctrace.asyncpg.instrument(pool_or_connection)`` changes only the objects it is
given: a connection's class is swapped for a traced subclass (asyncpg connections
have slots, so nothing can be set on the instance), and a pool's current and future
connections get the same. The statement is recorded sanitised (literals replaced by
``?``); query parameters never are.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, TypeVar

try:
    import asyncpg
    from asyncpg.pool import PoolConnectionProxy
except ImportError as exc:  # the extra is not installed
    raise ImportError(
        "asynctrace.asyncpg needs asyncpg: pip install 'asynctrace[asyncpg]'", name=exc.name
    ) from exc

from asynctrace._datastore import POSTGRESQL, query_span
from asynctrace._ratelimit import report_internal_error
from asynctrace.context import ActiveSpan

__all__ = ["instrument"]

_Target = TypeVar("_Target")
_Result = TypeVar("_Result")
_traced_classes: dict[type[Any], type[Any]] = {}
_is_resetting: ContextVar[bool] = ContextVar("asynctrace_asyncpg_resetting", default=False)


def instrument(pool_or_connection: _Target) -> _Target:
    """Trace the queries of an ``asyncpg`` pool or connection; return it.

    ``execute``, ``executemany``, ``fetch``, ``fetchrow``, ``fetchval`` and
    ``fetchmany`` (on the connection, a pool, or a connection acquired from it)
    become ``client`` spans named ``"postgres {statement}"`` (a SELECT's column
    list elided: ``"postgres SELECT … FROM orders WHERE id = ?"``), children of the
    current span; outside any span nothing is recorded. Tags: ``db.system``,
    ``db.statement`` (sanitised), ``db.rows`` (rows returned or affected) and, on
    a failure, ``db.sqlstate``; the error's message is not recorded, as it can
    quote a parameter. Errors are re-raised unchanged. Instrumenting again does
    nothing. Never raises because of tracing.
    """
    try:
        target: Any = pool_or_connection
        if isinstance(target, PoolConnectionProxy):
            target = target._con
        if isinstance(target, asyncpg.Pool):
            _instrument_pool(target)
        elif isinstance(target, asyncpg.Connection):
            target.__class__ = _traced_class(type(target))
    except Exception as exc:
        report_internal_error("asyncpg instrumentation failed", exc)
    return pool_or_connection


def _instrument_pool(pool: Any) -> None:
    # asyncpg has no public hook for a pool's connections: its connection class is
    # where new ones come from, and its holders hold the ones already made.
    pool._connection_class = _traced_class(pool._connection_class)
    for holder in pool._holders:
        connection = holder._con
        if connection is not None:
            connection.__class__ = _traced_class(type(connection))


def _traced_class(base: type[Any]) -> type[Any]:
    if getattr(base, "_asynctrace_traced", False):
        return base
    traced = _traced_classes.get(base)
    if traced is None:
        # No new slots: a subclass with the same layout, so __class__ can change.
        metaclass: Any = type(base)  # asyncpg's ConnectionMeta
        traced = metaclass(
            base.__name__, (_TracedQueries, base), {"__slots__": (), "_asynctrace_traced": True}
        )
        _traced_classes[base] = traced
    return traced


class _TracedQueries:
    """The query methods, each in a span; mixed in before asyncpg's ``Connection``.

    asyncpg's own methods call its private ``_execute``, never each other, so one
    call is one span.
    """

    __slots__ = ()

    async def reset(self, *args: Any, **kwargs: Any) -> None:
        # A pool resets each connection it takes back with one execute() of its own
        # (RESET ALL, UNLISTEN *, ...): the pool's bookkeeping, not the app's query.
        token = _is_resetting.set(True)
        try:
            await super().reset(*args, **kwargs)  # type: ignore[misc]  # asyncpg.Connection
        finally:
            _is_resetting.reset(token)

    async def execute(self, query: str, *args: Any, **kwargs: Any) -> Any:
        call = super().execute(query, *args, **kwargs)  # type: ignore[misc]  # asyncpg.Connection
        return await _traced(query, call, _rows_of_status)

    async def executemany(self, command: str, args: Any, **kwargs: Any) -> Any:
        call = super().executemany(command, args, **kwargs)  # type: ignore[misc]
        return await _traced(command, call, _no_rows)

    async def fetch(self, query: str, *args: Any, **kwargs: Any) -> Any:
        call = super().fetch(query, *args, **kwargs)  # type: ignore[misc]
        return await _traced(query, call, len)

    async def fetchmany(self, query: str, args: Any, **kwargs: Any) -> Any:
        call = super().fetchmany(query, args, **kwargs)  # type: ignore[misc]
        return await _traced(query, call, len)

    async def fetchrow(self, query: str, *args: Any, **kwargs: Any) -> Any:
        call = super().fetchrow(query, *args, **kwargs)  # type: ignore[misc]
        return await _traced(query, call, _row_count)

    async def fetchval(self, query: str, *args: Any, **kwargs: Any) -> Any:
        call = super().fetchval(query, *args, **kwargs)  # type: ignore[misc]
        return await _traced(query, call, _no_rows)


async def _traced(
    query: object, call: Awaitable[_Result], rows_of: Callable[[Any], int | None]
) -> _Result:
    """Await one of asyncpg's query calls inside the query's span.

    ``call`` is the coroutine of asyncpg's own method, made but not yet started: it
    runs only when awaited here, inside the span.
    """
    started = _start(query)
    if started is None:
        return await call
    try:
        result = await call
    except BaseException as exc:
        _fail(started, exc)
        raise
    try:
        rows = rows_of(result)
        if rows is not None:
            started.set_tag("db.rows", rows)
    except Exception as exc:
        report_internal_error("asyncpg span end failed", exc)
    finally:
        started.__exit__(None, None, None)
    return result


def _no_rows(result: object) -> None:
    return None


def _row_count(row: object) -> int:
    return 0 if row is None else 1


def _start(query: object) -> ActiveSpan | None:
    if not isinstance(query, str) or _is_resetting.get():
        return None
    return query_span(POSTGRESQL, query)


def _fail(started: ActiveSpan, exc: BaseException) -> None:
    """End the span of a failed query: SQLSTATE and type, never the message."""
    try:
        if isinstance(exc, Exception):
            sqlstate = getattr(exc, "sqlstate", None)
            name = type(exc).__name__
            started.set_tag("error.type", name)
            if isinstance(sqlstate, str):
                started.set_tag("db.sqlstate", sqlstate)
                started.set_status("error", f"{name} (SQLSTATE {sqlstate})")
            else:
                started.set_status("error", name)
            started.__exit__(None, None, None)
            return
    except Exception as inner:
        report_internal_error("asyncpg span end failed", inner)
    # A cancellation (cancelled=true), or the fallback when recording failed.
    started.__exit__(type(exc), exc, exc.__traceback__)


def _rows_of_status(status: object) -> int | None:
    """Rows affected, from a command status such as ``"UPDATE 3"`` or ``"INSERT 0 1"``."""
    if not isinstance(status, str):
        return None
    last = status.rpartition(" ")[2]
    return int(last) if last.isdigit() else None

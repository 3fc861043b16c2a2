"""Tracing for redis-py's asyncio client: each command and pipeline becomes a ``client`` span.

``asynctrace.redis.instrument(client)`` wraps that one client object (and the
pipelines it makes); nothing is patched globally, so asynctrace's own exporter
connection and every other client stay untraced. Spans record the command name, how
many keys it names and a pipeline's length: never a key or a value.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from asynctrace._datastore import REDIS, store_span
from asynctrace._ratelimit import report_internal_error
from asynctrace.context import ActiveSpan

__all__ = ["instrument"]

_Client = TypeVar("_Client")
_MARK = "_asynctrace_instrumented"
# Commands whose every argument is a key, and those of key-value pairs; any other
# command names one key (its first argument) when it has arguments.
_ALL_KEYS = frozenset(("MGET", "DEL", "UNLINK", "EXISTS", "TOUCH", "WATCH", "SUNION", "SINTER"))
_PAIRS = frozenset(("MSET", "MSETNX"))
_KEYLESS = frozenset(("PING", "INFO", "SCAN", "KEYS", "FLUSHDB", "DBSIZE", "SELECT", "AUTH"))
# A pipeline span lists its first commands' names (distinct, in order), no more.
_MAX_LISTED_COMMANDS = 8


def instrument(client: _Client) -> _Client:
    """Trace every command and pipeline of one ``redis.asyncio`` client; return it.

    Commands become ``client`` spans named ``"redis {COMMAND}"``, pipelines
    ``"redis PIPELINE"``, children of the current span; outside any span nothing is
    recorded. Tags: ``db.system=redis``, ``db.operation``, ``db.redis.key_count``,
    and for pipelines ``db.redis.pipeline_length`` and ``db.redis.commands``. A
    command's error is recorded and re-raised unchanged. Only this object is
    changed (its ``execute_command`` and ``pipeline``); instrumenting it again does
    nothing. Never raises because of tracing; an object without those methods is
    returned untouched.
    """
    try:
        if getattr(client, _MARK, False):
            return client
        execute = getattr(client, "execute_command", None)
        pipeline = getattr(client, "pipeline", None)
        if not callable(execute) or not callable(pipeline):
            return client
        # Instance attributes shadow the class's methods for this object only.
        setattr(client, "execute_command", _traced_execute(execute))  # noqa: B010 - instance only
        setattr(client, "pipeline", _traced_pipeline(pipeline))  # noqa: B010
        setattr(client, _MARK, True)
    except Exception as exc:
        report_internal_error("redis instrumentation failed", exc)
    return client


def _traced_execute(execute: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def execute_command(*args: Any, **options: Any) -> Any:
        command = _start_command(args)
        if command is None:
            return await execute(*args, **options)
        try:
            result = await execute(*args, **options)
        except BaseException as exc:
            command.__exit__(type(exc), exc, exc.__traceback__)
            raise
        command.end()
        return result

    return execute_command


def _traced_pipeline(pipeline: Callable[..., Any]) -> Callable[..., Any]:
    def make_pipeline(*args: Any, **kwargs: Any) -> Any:
        made = pipeline(*args, **kwargs)
        try:
            execute = made.execute
            setattr(made, "execute", _traced_pipeline_execute(made, execute))  # noqa: B010
        except Exception as exc:
            report_internal_error("redis pipeline instrumentation failed", exc)
        return made

    return make_pipeline


def _traced_pipeline_execute(
    pipe: Any, execute: Callable[..., Awaitable[list[Any]]]
) -> Callable[..., Awaitable[list[Any]]]:
    async def execute_pipeline(*args: Any, **kwargs: Any) -> list[Any]:
        started = _start_pipeline(pipe)
        if started is None:
            return await execute(*args, **kwargs)
        try:
            results = await execute(*args, **kwargs)
        except BaseException as exc:
            started.__exit__(type(exc), exc, exc.__traceback__)
            raise
        try:
            # raise_on_error=False returns errors as values: each one is a failure.
            failed = sum(1 for result in results if isinstance(result, Exception))
            if failed:
                started.set_tag("db.redis.failed_commands", failed)
                started.set_status("error")
        except Exception as exc:
            report_internal_error("redis pipeline span end failed", exc)
        started.end()
        return results

    return execute_pipeline


def _start_command(args: Sequence[Any]) -> ActiveSpan | None:
    try:
        if not args:
            return None
        name = _command_name(args[0])
        return store_span(
            REDIS,
            name,
            tags={"db.operation": name, "db.redis.key_count": _key_count(name, len(args) - 1)},
        )
    except Exception as exc:
        report_internal_error("redis span start failed", exc)
        return None


def _start_pipeline(pipe: Any) -> ActiveSpan | None:
    try:
        stack = list(getattr(pipe, "command_stack", ()))
        names: list[str] = []
        keys = 0
        for args, _options in stack:
            if not args:
                continue
            name = _command_name(args[0])
            keys += _key_count(name, len(args) - 1)
            if name not in names and len(names) < _MAX_LISTED_COMMANDS:
                names.append(name)
        return store_span(
            REDIS,
            "PIPELINE",
            tags={
                "db.operation": "PIPELINE",
                "db.redis.pipeline_length": len(stack),
                "db.redis.commands": " ".join(names),
                "db.redis.key_count": keys,
            },
        )
    except Exception as exc:
        report_internal_error("redis span start failed", exc)
        return None


def _command_name(first: object) -> str:
    if isinstance(first, bytes):
        first = first.decode("ascii", "replace")
    # Multi-word commands arrive as one argument ("CLIENT SETNAME"): keep the words,
    # which are the command, not data.
    return str(first).upper()[:64]


def _key_count(name: str, arguments: int) -> int:
    if arguments <= 0 or name in _KEYLESS:
        return 0
    if name in _ALL_KEYS:
        return arguments
    if name in _PAIRS:
        return arguments // 2
    return 1

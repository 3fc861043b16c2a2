"""The ``asynctrace`` command line, for a person at a terminal.

Every command reads through ``TraceStore`` inside one ``asyncio.run``. A failure is
one ``error: ...`` line on stderr and exit status 1; a bad argument is one such line
too, with status 2. No user error ends in a traceback, and no message contains the
Redis password (the store's messages name only host and port).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn, TextIO, TypeVar

import click
from click.core import ParameterSource

import asynctrace
from asynctrace import keys
from asynctrace.analysis import bottleneck, critical_path, error_chain, self_time
from asynctrace.errors import AsynctraceError, InvalidQueryError
from asynctrace.model import Trace, utc_day
from asynctrace.store import TraceStore, TraceSummary
from asynctrace.terminal import (
    TraceRow,
    error_rows,
    render_trace_table,
    render_waterfall,
    slow_rows,
)

__all__ = ["DEFAULT_REDIS_URL", "main"]

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

_T = TypeVar("_T")
# The store's largest listing: enough index summaries to describe slow and error ids.
_SUMMARY_WINDOW = 1000
_DEFAULT_WIDTH = 100
_DRAWING = "█░✗…"


@dataclass(frozen=True, slots=True)
class _Settings:
    """The group's options, handed to every command."""

    redis_url: str
    prefix: str
    # The demo uses a real Redis only when one was named (--redis-url or REDIS_URL).
    is_redis_url_given: bool


@dataclass(frozen=True, slots=True)
class _Terminal:
    """How stdout can be drawn on: its width, colour and character set."""

    width: int
    color: bool
    ascii_only: bool
    is_tty: bool

    @classmethod
    def of(cls, stream: TextIO) -> _Terminal:
        is_tty = stream.isatty()
        encoding = getattr(stream, "encoding", None) or "ascii"
        try:
            _DRAWING.encode(encoding)
            ascii_only = False
        except (UnicodeEncodeError, LookupError):
            ascii_only = True
        return cls(
            width=shutil.get_terminal_size((_DEFAULT_WIDTH, 24)).columns,
            # https://no-color.org: any non-empty NO_COLOR turns colour off.
            color=is_tty and not os.environ.get("NO_COLOR"),
            ascii_only=ascii_only,
            is_tty=is_tty,
        )


class _Cli(click.Group):
    """The command group; reports every error as one ``error: ...`` line on stderr."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            # Not standalone, so click raises its errors here instead of printing its
            # multi-line usage block; it still returns the status of --help/--version.
            status = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            _fail(f"{exc.format_message()}{hint}", exc.exit_code)
        except click.ClickException as exc:
            _fail(exc.format_message(), exc.exit_code)
        except click.Abort:
            _fail("interrupted", 130)
        sys.exit(status if isinstance(status, int) else 0)


def _fail(message: str, status: int) -> NoReturn:
    click.echo(f"error: {' '.join(message.split())}", err=True)
    sys.exit(status)


@click.group(
    "asynctrace",
    cls=_Cli,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--redis-url",
    envvar="REDIS_URL",
    default=DEFAULT_REDIS_URL,
    show_default=True,
    show_envvar=True,
    metavar="URL",
    help="The Redis the traces are stored in.",
)
@click.option(
    "--prefix",
    default=keys.DEFAULT_PREFIX,
    show_default=True,
    help="Key prefix the services export with.",
)
@click.version_option(asynctrace.__version__, prog_name="asynctrace")
@click.pass_context
def main(ctx: click.Context, redis_url: str, prefix: str) -> None:
    """Find which service made a request slow and where an error started.

    Traces are read from Redis, where asynctrace's exporter writes them.
    """
    ctx.obj = _Settings(
        redis_url=redis_url,
        prefix=prefix,
        is_redis_url_given=ctx.get_parameter_source("redis_url") is not ParameterSource.DEFAULT,
    )


@contextmanager
def _reported(*, param_hint: str | None = None) -> Iterator[None]:
    """Turn asynctrace's errors into CLI errors.

    ``InvalidQueryError`` is a bad argument (status 2), named ``param_hint`` when
    given; every other ``AsynctraceError`` (Redis unreachable, a command refused)
    is a failure (status 1). Their messages are the store's: one line, no password.
    """
    try:
        yield
    except InvalidQueryError as exc:
        raise click.BadParameter(str(exc), param_hint=param_hint) from None
    except AsynctraceError as exc:
        raise click.ClickException(str(exc)) from None


def _store(settings: _Settings) -> TraceStore:
    """A store on the configured Redis; makes no connection yet."""
    with _reported(param_hint="'--redis-url'"):
        return TraceStore.from_url(settings.redis_url, prefix=settings.prefix)


def _query(
    settings: _Settings,
    read: Callable[[TraceStore], Awaitable[_T]],
    *,
    param_hint: str | None = None,
) -> _T:
    """Run ``read`` on a store for the settings, in its own event loop."""
    store = _store(settings)

    async def run() -> _T:
        async with store:
            return await read(store)

    with _reported(param_hint=param_hint):
        return asyncio.run(run())


def _echo_table(rows: list[TraceRow], empty: str) -> None:
    if not rows:
        click.echo(empty)
        return
    terminal = _Terminal.of(sys.stdout)
    width = terminal.width if terminal.is_tty else None
    click.echo(render_trace_table(rows, width=width, ascii_only=terminal.ascii_only))


# -- show --------------------------------------------------------------------------------


@main.command(short_help="Draw a trace; name its bottleneck and error origin.")
@click.argument("trace_id")
@click.option("--json", "as_json", is_flag=True, help="Print the spans and the analysis as JSON.")
@click.pass_obj
def show(settings: _Settings, trace_id: str, as_json: bool) -> None:
    """Draw one trace as a waterfall, with its bottleneck and where its error started.

    TRACE_ID is the 32 hex digits of the X-Trace-ID header or a listing.
    """

    async def read(store: TraceStore) -> Trace | None:
        return await store.get_trace(trace_id)

    trace = _query(settings, read, param_hint="'TRACE_ID'")
    if trace is None:
        # The store accepted the id, so it is 32 hex digits: safe to echo.
        raise click.ClickException(f"no trace {trace_id.lower()} (it may have expired after 24 h)")
    if as_json:
        click.echo(json.dumps(_trace_json(trace), indent=2, ensure_ascii=False))
        return
    terminal = _Terminal.of(sys.stdout)
    click.echo(
        render_waterfall(
            trace, width=terminal.width, color=terminal.color, ascii_only=terminal.ascii_only
        )
    )
    click.echo()
    found = bottleneck(trace)
    click.echo(found.sentence if found else "no critical path: the root span lasted 0 ms")
    chain = error_chain(trace)
    if chain is not None:
        click.echo(chain.sentence)


@main.command(short_help="Print a trace's log lines across services, in time order.")
@click.argument("trace_id")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per log line.")
@click.pass_obj
def logs(settings: _Settings, trace_id: str, as_json: bool) -> None:
    """Print every log line of TRACE_ID, from every service, in time order.

    Lines come from span logs: ``span.log()`` calls, recorded exceptions and the
    records ``asynctrace.logs.install()`` attaches.
    """
    from asynctrace.logs import format_log_lines, trace_log_lines

    async def read(store: TraceStore) -> Trace | None:
        return await store.get_trace(trace_id)

    trace = _query(settings, read, param_hint="'TRACE_ID'")
    if trace is None:
        raise click.ClickException(f"no trace {trace_id.lower()} (it may have expired after 24 h)")
    lines = trace_log_lines(trace)
    if not lines:
        if not as_json:
            click.echo(f"trace {trace.trace_id} has no log lines")
        return
    click.echo(format_log_lines(lines, json=as_json))


def _trace_json(trace: Trace) -> dict[str, Any]:
    """The trace as span JSON plus its analysis, in the dashboard API's field names."""
    critical = critical_path(trace)
    found = bottleneck(trace)
    chain = error_chain(trace)
    return {
        "trace_id": trace.trace_id,
        "root_span_id": trace.root.span_id,
        "operation": trace.root.operation,
        "service": trace.root.service,
        "services": list(trace.services),
        "duration_ms": round(trace.total_duration, 3),
        "start_time": round(trace.start_time, 3),
        "status": "error" if trace.has_errors else "ok",
        "span_count": len(trace.spans),
        "is_complete": trace.is_complete,
        "orphan_span_ids": [span.span_id for span in trace.orphans],
        "corrupt_entries": trace.corrupt_entries,
        "spans": [span.to_dict() for span, _ in trace.depth_first()],
        "analysis": {
            "critical_path": [
                {
                    "span_id": segment.span.span_id,
                    "service": segment.span.service,
                    "operation": segment.span.operation,
                    "start": round(segment.start, 3),
                    "end": round(segment.end, 3),
                    "duration_ms": round(segment.duration_ms, 3),
                }
                for segment in critical
            ],
            "bottleneck": None
            if found is None
            else {
                "service": found.service,
                "span_id": found.span.span_id,
                "critical_ms": round(found.critical_ms, 3),
                "total_ms": round(found.total_ms, 3),
                "share": round(found.share, 4),
                "sentence": found.sentence,
            },
            "error_chain": None
            if chain is None
            else {
                "origin_span_id": chain.origin.span_id,
                "message": chain.message,
                "sentence": chain.sentence,
                "path": [
                    {
                        "span_id": hop.span.span_id,
                        "service": hop.span.service,
                        "operation": hop.span.operation,
                        "status": hop.status,
                        "http_status": hop.http_status,
                    }
                    for hop in chain.path
                ],
            },
            "self_time_ms": {key: round(value, 3) for key, value in self_time(trace).items()},
        },
    }


# -- listings ----------------------------------------------------------------------------

_LIMIT = click.option(
    "--limit",
    type=click.IntRange(1, 1000),
    default=20,
    show_default=True,
    help="How many traces to list.",
)


@main.command(short_help="List the slowest traces kept.")
@_LIMIT
@click.pass_obj
def slow(settings: _Settings, limit: int) -> None:
    """List the slowest traces kept (a root over the exporter's threshold, 1 s by default)."""

    async def read(store: TraceStore) -> list[TraceRow]:
        found = await store.slow_traces(limit)
        known = await store.recent_traces(_SUMMARY_WINDOW) if found else []
        return slow_rows(found, known)

    _echo_table(_query(settings, read), "no slow traces stored")


@main.command()
@click.option(
    "--day", metavar="YYYY-MM-DD", help="UTC day to list (default: today); kept for 7 days."
)
@click.pass_obj
def errors(settings: _Settings, day: str | None) -> None:
    """List the traces with an error span on one UTC day."""
    shown_day = day or utc_day(time.time() * 1000.0)

    async def read(store: TraceStore) -> list[TraceRow]:
        found = await store.error_traces(day=shown_day)
        known = await store.recent_traces(_SUMMARY_WINDOW) if found else []
        return error_rows(found, known)

    rows = _query(settings, read, param_hint="'--day'")
    _echo_table(rows, f"no traces with errors on {shown_day} (UTC)")


@main.command()
@_LIMIT
@click.pass_obj
def recent(settings: _Settings, limit: int) -> None:
    """List the newest traces, newest first."""

    async def read(store: TraceStore) -> list[TraceSummary]:
        return await store.recent_traces(limit)

    rows = [TraceRow.of(summary) for summary in _query(settings, read)]
    _echo_table(rows, "no traces in the last 24 h")


@main.command()
@click.option("--service", help="A service the trace crossed (exact name).")
@click.option("--operation", help="Part of an operation name (any case).")
@click.option("--status", type=click.Choice(["ok", "error"]), help="The trace's status.")
@click.option(
    "--min-duration",
    "min_duration_ms",
    type=click.FloatRange(min=0),
    metavar="MS",
    help="At least this many milliseconds.",
)
@click.option("--text", help="Part of an operation or error text, or a whole trace id.")
@_LIMIT
@click.pass_obj
def search(
    settings: _Settings,
    service: str | None,
    operation: str | None,
    status: str | None,
    min_duration_ms: float | None,
    text: str | None,
    limit: int,
) -> None:
    """List recent traces that match every filter given, newest first."""

    async def read(store: TraceStore) -> list[TraceSummary]:
        return await store.search(
            service=service,
            operation=operation,
            status=status,
            min_duration_ms=min_duration_ms,
            text=text,
            limit=limit,
        )

    rows = [TraceRow.of(summary) for summary in _query(settings, read)]
    _echo_table(rows, "no recent traces match")


# -- demo and dashboard ------------------------------------------------------------------

_PORT = click.IntRange(0, 65535)


@main.command("demo", short_help="Run five traced services and tell their story.")
@click.option(
    "--serve",
    "serve_dashboard",
    is_flag=True,
    help="Afterwards keep the services running and open the dashboard on the traces.",
)
@click.option(
    "--port", type=_PORT, default=8080, show_default=True, help="Dashboard port, with --serve."
)
@click.pass_obj
def demo_command(settings: _Settings, serve_dashboard: bool, port: int) -> None:
    """Run five traced services in this process and show what their traces tell.

    Traces go to Redis when --redis-url or REDIS_URL names one, otherwise to an
    embedded in-process store that needs no server.
    """
    from asynctrace import demo

    terminal = _Terminal.of(sys.stdout)
    job = demo.main(
        settings.redis_url if settings.is_redis_url_given else None,
        out=sys.stdout,
        serve=serve_dashboard,
        port=port,
        prefix=settings.prefix,
        width=terminal.width,
        color=terminal.color,
        ascii_only=terminal.ascii_only,
    )
    with _reported(param_hint="'--redis-url'"):
        if serve_dashboard:
            _run_until_stopped(job)
        else:
            asyncio.run(job)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=_PORT, default=8080, show_default=True, help="Port to listen on.")
@click.option(
    "--token",
    envvar="ASYNCTRACE_TOKEN",
    show_envvar=True,
    help="Require this token on every request (needed off loopback).",
)
@click.pass_obj
def serve(settings: _Settings, host: str, port: int, token: str | None) -> None:
    """Serve the dashboard on the stored traces until Ctrl-C."""
    try:
        from asynctrace.web import serve as serve_dashboard
    except ImportError as exc:
        raise click.ClickException(
            f"the dashboard is not available ({exc}); pip install 'asynctrace[web]'"
        ) from None

    store = _store(settings)

    async def run() -> None:
        async with store:
            shown = f"[{host}]" if ":" in host else host
            click.echo(f"starting the dashboard on http://{shown}:{port}/ (Ctrl-C to stop)")
            try:
                await serve_dashboard(store, host=host, port=port, token=token)
            except OSError as exc:
                raise AsynctraceError(
                    f"cannot serve on {host}:{port}: {exc.strerror or exc}"
                ) from None

    with _reported():
        try:
            _run_until_stopped(run())
        except ValueError as exc:
            # serve() refuses a public address without a token, and a bad token.
            raise click.UsageError(str(exc)) from None


def _run_until_stopped(job: Coroutine[Any, Any, object]) -> None:
    """``asyncio.run`` a job that runs until Ctrl-C, the normal way to stop it."""
    try:
        asyncio.run(job)
    except KeyboardInterrupt:
        click.echo("stopped")


if __name__ == "__main__":
    main()

"""The ``asynctrace`` command line, for a person at a terminal.

Every command reads through ``TraceStore`` inside one ``asyncio.run``. A failure is
one ``error: ...`` line on stderr and exit status 1; a bad argument is one such line
too, with status 2. No user error ends in a traceback, and no message contains the
Redis password (the store's messages name only host and port).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
import shlex
import shutil
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TextIO, TypeVar
from urllib.parse import urlsplit, urlunsplit

try:
    import click
    from click.core import ParameterSource
except ImportError as exc:  # the extra is not installed
    raise ImportError(
        "asynctrace.cli needs the 'cli' extra: pip install 'asynctrace[cli]'", name=exc.name
    ) from exc

import asynctrace
from asynctrace import keys
from asynctrace.analysis import bottleneck, error_chain, trace_report
from asynctrace.analysis.changes import StepChange
from asynctrace.errors import AsynctraceError, InvalidQueryError
from asynctrace.model import DEFAULT_LIMITS, Span, SpanDecodeError, Trace, decode_span, utc_day
from asynctrace.store import EdgeStats, StatsRow, TraceStore, TraceSummary, WeeklyPattern
from asynctrace.terminal import (
    TraceRow,
    error_rows,
    render_edges,
    render_heatmap,
    render_stats_table,
    render_trace_table,
    render_waterfall,
    slow_rows,
    terminal_json,
    terminal_text,
)

__all__ = ["DEFAULT_REDIS_URL", "main"]

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

_T = TypeVar("_T")
# The store's largest listing: enough index summaries to describe slow and error ids.
_SUMMARY_WINDOW = 1000
_DEFAULT_WIDTH = 100
# A COLUMNS of millions would make every waterfall row that long (MemoryError).
_MAX_WIDTH = 1000
_DRAWING = "█░✗…"


@dataclass(frozen=True, slots=True)
class _Settings:
    """The group's options, handed to every command."""

    redis_url: str
    prefix: str
    # The demo uses a real Redis only when one was named (--redis-url or REDIS_URL).
    is_redis_url_given: bool
    # Named by --redis-url rather than REDIS_URL: hints must then repeat it.
    is_redis_url_an_option: bool = False
    # The clock of the aggregate commands and of errors' default day (epoch ms),
    # fixed by the hidden --now option.
    now_ms: float | None = None


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
            width=min(shutil.get_terminal_size((_DEFAULT_WIDTH, 24)).columns, _MAX_WIDTH),
            # https://no-color.org: any non-empty NO_COLOR turns colour off.
            color=is_tty and not os.environ.get("NO_COLOR"),
            ascii_only=ascii_only,
            is_tty=is_tty,
        )


class _NeverRaised(click.UsageError):
    """Stands in for ``NoArgsIsHelpError`` on click 8.1, which prints the help itself."""


# click >= 8.2 raises this for a bare command group.
_NoArgsIsHelp: type[click.UsageError] = getattr(click.exceptions, "NoArgsIsHelpError", _NeverRaised)


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
        except _NoArgsIsHelp as exc:
            # A bare ``asynctrace``: the usage as --help prints it, not one error line.
            click.echo(exc.ctx.get_help() if exc.ctx is not None else exc.format_message())
            sys.exit(0)
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
    help="The Redis the traces are stored in (also accepted after the command).",
)
@click.option(
    "--prefix",
    default=keys.DEFAULT_PREFIX,
    show_default=True,
    help="Key prefix the services export with.",
)
@click.option(
    "--now",
    hidden=True,
    metavar="TIME",
    help="Answer as if it were TIME (ISO 8601): the aggregate commands' periods and the "
    "errors listing's default day; for reproducible reports.",
)
@click.version_option(asynctrace.__version__, prog_name="asynctrace")
@click.pass_context
def main(ctx: click.Context, redis_url: str, prefix: str, now: str | None) -> None:
    """Find which service made a request slow and where an error started.

    Traces are read from Redis, where asynctrace's exporter writes them.
    """
    ctx.obj = _Settings(
        redis_url=redis_url,
        prefix=prefix,
        is_redis_url_given=ctx.get_parameter_source("redis_url") is not ParameterSource.DEFAULT,
        is_redis_url_an_option=(
            ctx.get_parameter_source("redis_url") is ParameterSource.COMMANDLINE
        ),
        now_ms=None if now is None else _instant_ms(now, "--now"),
    )


def _with_settings(command: Callable[..., None]) -> Callable[..., None]:
    """Hand ``command`` the group's settings as its first argument, and accept the
    connection options after the command's name too, where they take precedence:
    ``asynctrace show ID --redis-url URL`` is ``asynctrace --redis-url URL show ID``.
    """

    @functools.wraps(command)
    def run(*args: Any, redis_url: str | None, prefix: str | None, **kwargs: Any) -> None:
        settings = click.get_current_context().find_object(_Settings)
        if settings is None:  # a command invoked without its group
            raise click.UsageError("run this command as 'asynctrace COMMAND'")
        if redis_url is not None:
            settings = replace(
                settings, redis_url=redis_url, is_redis_url_given=True, is_redis_url_an_option=True
            )
        if prefix is not None:
            settings = replace(settings, prefix=prefix)
        command(settings, *args, **kwargs)

    # click lists a command's options in the reverse order of this list: these last.
    params: list[click.Parameter] = getattr(run, "__click_params__", [])
    run.__click_params__ = [  # type: ignore[attr-defined]
        click.Option(
            ["--prefix"],
            help=f"Key prefix the services export with.  [default: {keys.DEFAULT_PREFIX}]",
        ),
        click.Option(
            ["--redis-url"],
            metavar="URL",
            help="The Redis the traces are stored in; also accepted before the command.  "
            f"[env var: REDIS_URL; default: {DEFAULT_REDIS_URL}]",
        ),
        *params,
    ]
    return run


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
@_with_settings
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
        click.echo(terminal_json(json.dumps(trace_report(trace), indent=2, ensure_ascii=False)))
        return
    terminal = _Terminal.of(sys.stdout)
    click.echo(
        render_waterfall(
            trace, width=terminal.width, color=terminal.color, ascii_only=terminal.ascii_only
        )
    )
    click.echo()
    found = bottleneck(trace)
    click.echo(
        terminal_text(found.sentence) if found else "no critical path: the root span lasted 0 ms"
    )
    chain = error_chain(trace)
    if chain is not None:
        click.echo(terminal_text(chain.sentence))


@main.command(short_help="Print a trace's log lines across services, in time order.")
@click.argument("trace_id")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per log line.")
@_with_settings
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
    if trace.is_truncated:
        # On stderr, so that --json output stays one object per line.
        click.echo(
            f"TRUNCATED: {trace.unread_entries:,} more stored entries of this trace not read",
            err=True,
        )
    lines = trace_log_lines(trace)
    if not lines:
        if not as_json:
            click.echo(f"trace {trace.trace_id} has no log lines")
        return
    click.echo(
        terminal_json(format_log_lines(lines, json=True))
        if as_json
        else format_log_lines(lines, json=False)
    )


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
@_with_settings
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
@_with_settings
def errors(settings: _Settings, day: str | None) -> None:
    """List the traces with an error span on one UTC day."""
    shown_day = day or utc_day(_now_of(settings))

    async def read(store: TraceStore) -> list[TraceRow]:
        found = await store.error_traces(day=shown_day)
        known = await store.recent_traces(_SUMMARY_WINDOW) if found else []
        return error_rows(found, known)

    rows = _query(settings, read, param_hint="'--day'")
    _echo_table(rows, f"no traces with errors on {shown_day} (UTC)")


@main.command()
@_LIMIT
@_with_settings
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
@_with_settings
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


# -- aggregates --------------------------------------------------------------------------

_RELATIVE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([mhdw])")
_UNIT_MS = {"m": 60_000.0, "h": 3_600_000.0, "d": 86_400_000.0, "w": 604_800_000.0}


def _instant_ms(text: str, name: str) -> float:
    """An ISO 8601 time (UTC unless it says otherwise) as epoch ms."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.BadParameter(
            "expected an ISO 8601 time, e.g. 2026-11-23T09:00", param_hint=f"'{name}'"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp() * 1000.0


def _since_ms(text: str | None, now_ms: float) -> float | None:
    """``--since``: a duration back from now (``30m``, ``24h``, ``7d``, ``2w``) or a time."""
    if text is None:
        return None
    relative = _RELATIVE.fullmatch(text.strip().lower())
    if relative is not None:
        return now_ms - float(relative[1]) * _UNIT_MS[relative[2]]
    return _instant_ms(text, "--since")


_SINCE = click.option(
    "--since",
    metavar="24h|7d|TIME",
    help="Start of the period: a duration back from now (30m, 24h, 7d, 2w) or an ISO time. "
    "[default: 24h]",
)


def _now_of(settings: _Settings) -> float:
    return time.time() * 1000.0 if settings.now_ms is None else settings.now_ms


def _period_text(since_ms: float | None, now_ms: float) -> str:
    start = now_ms - 86_400_000.0 if since_ms is None else since_ms
    start = start // 3_600_000.0 * 3_600_000.0
    hours = (now_ms - start) / 3_600_000.0

    def shown(ms: float) -> str:
        return datetime.fromtimestamp(ms / 1000.0, UTC).strftime("%Y-%m-%d %H:%M")

    return f"{shown(start)} to {shown(now_ms)} UTC ({hours:.1f} h)"


@main.command(short_help="Requests, errors and latency per service and operation.")
@click.option("--service", help="Only this service (exact name).")
@_SINCE
@_with_settings
def stats(settings: _Settings, service: str | None, since: str | None) -> None:
    """Rate, error %, p50/p95/p99 and max per service and operation, from the per-hour
    aggregates (kept 35 days), with the change against the period of the same length
    before. Every request counts, sampled or not. Below the table, one line per route
    whose p95 changed from one hour on in the last 7 days and stayed ("p95 of GET
    /orders/{id} went from 400 ms to 1,200 ms on Tuesday 14:00 UTC and stayed")."""
    now_ms = _now_of(settings)
    since_ms = _since_ms(since, now_ms)

    async def read(store: TraceStore) -> tuple[list[StatsRow], list[StepChange]]:
        rows = await store.stats(service, since_ms, now=now_ms)
        changes = await store.step_changes(service, now=now_ms) if rows else []
        return rows, changes

    rows, changes = _query(settings, read, param_hint="'--since'")
    period = _period_text(since_ms, now_ms)
    if not rows:
        click.echo(f"no requests aggregated from {period}")
        return
    click.echo(f"requests from {period}; change against the period before")
    click.echo(render_stats_table(rows))
    # A deploy that made a route slower (or faster) and stayed, over the last 7 days.
    for change in changes:
        click.echo(f"{change.service}: {change.sentence}")


@main.command(short_help="Hour-of-week heatmap of one operation, and its hot spots.")
@click.option("--service", required=True, help="The service (exact name).")
@click.option("--operation", required=True, help="The operation (exact name).")
@click.option(
    "--weeks", type=click.IntRange(1, 5), default=4, show_default=True, help="Weeks to look at."
)
@_with_settings
def patterns(settings: _Settings, service: str, operation: str, weeks: int) -> None:
    """Draw p95 by hour of the week (UTC) over the last weeks, and name the hours that
    are slow week after week ("Mondays 09:00-10:00 UTC, p95 5,100 ms vs 400 ms typical,
    in 4 of the last 4 weeks, 46 of 48 requests over 400 ms").

    An hour is named when its requests are slower than the rest of their weeks beyond
    chance (all weeks pooled; a 1 % false-alarm budget per route), still so without
    its worst week, about twice the typical or more, in at least 3 weeks and three
    quarters of the weeks with data. A few requests an hour are enough when every
    week says the same (docs/patterns.md).
    """
    now_ms = _now_of(settings)

    async def read(store: TraceStore) -> WeeklyPattern:
        return await store.patterns(service, operation, weeks, now=now_ms)

    pattern = _query(settings, read)
    if not any(cell.count for cell in pattern.cells):
        click.echo(f"no requests aggregated for {service} {operation} in the last {weeks} weeks")
        return
    terminal = _Terminal.of(sys.stdout)
    click.echo(render_heatmap(pattern, ascii_only=terminal.ascii_only))


@main.command("map", short_help="Calls between services: rate, errors, p95.")
@_SINCE
@_with_settings
def map_command(settings: _Settings, since: str | None) -> None:
    """List caller -> callee edges with calls, calls/s, error % and p95 (at the callee).

    An edge is counted when the caller's client and the callee's server are both
    traced by asynctrace (the caller's service travels in the tracestate header).
    """
    now_ms = _now_of(settings)
    since_ms = _since_ms(since, now_ms)

    async def read(store: TraceStore) -> list[EdgeStats]:
        return await store.service_map(since_ms, now=now_ms)

    edges = _query(settings, read, param_hint="'--since'")
    period = _period_text(since_ms, now_ms)
    if not edges:
        click.echo(f"no calls between services from {period}")
        return
    click.echo(f"calls between services from {period}")
    click.echo(render_edges(edges))


_IMPORT_BATCH = 1000
_SHOWN_BAD_LINES = 20


@main.command("import", short_help="Load a JSON-lines file of spans into Redis.")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path))
@_with_settings
def import_command(settings: _Settings, file: Path) -> None:
    """Write the spans of FILE (one span JSON object per line, as asynctrace or the
    original TypeScript tracer writes them) exactly as a live span would be written:
    trace list, indexes and the per-hour aggregates of their start times (hours
    more than 35 days old are past the aggregates' lifetime and are not kept).

    Blank lines are skipped. A line that is not valid span JSON is reported with its
    number and skipped (a span is written whole or not at all); the good lines are
    still imported, and the exit status is then 1 so that scripts notice.
    """
    from asynctrace.export import RedisCommandError, RedisExporter

    try:
        exporter = RedisExporter(settings.redis_url, prefix=settings.prefix)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--redis-url'") from None
    bad: list[str] = []
    imported = 0
    batch: list[Span] = []
    with asyncio.Runner() as runner:

        def flush() -> None:
            nonlocal imported
            if not batch:
                return
            try:
                runner.run(exporter.export(batch))
            except (ConnectionError, OSError, RedisCommandError) as exc:
                raise click.ClickException(
                    f"Redis refused the import after {imported:,} spans: {exc}"
                ) from None
            except ValueError as exc:
                # A span the decoder let through but the exporter cannot key (a time
                # outside the datetime range, say): one line, status 1, no traceback.
                raise click.ClickException(
                    f"could not import the spans after the first {imported:,}: "
                    f"{type(exc).__name__}: {exc}"
                ) from None
            imported += len(batch)
            batch.clear()

        try:
            with (
                file.open("rb") as lines,
                click.progressbar(
                    length=file.stat().st_size, label=f"importing {file.name}", file=sys.stderr
                ) as bar,
            ):
                for number, line in enumerate(lines, start=1):
                    bar.update(len(line))
                    if not line.strip():
                        continue
                    try:
                        # Held to the limits a live span has (a 5 MB tag is cut).
                        batch.append(decode_span(line, limits=DEFAULT_LIMITS))
                    except SpanDecodeError as exc:
                        bad.append(f"line {number}: {exc}")
                        continue
                    except RecursionError:
                        bad.append(f"line {number}: nested too deeply")
                        continue
                    if len(batch) >= _IMPORT_BATCH:
                        flush()
                flush()
        finally:
            runner.run(exporter.shutdown())
    for message in bad[:_SHOWN_BAD_LINES]:
        click.echo(f"skipped {message}", err=True)
    if len(bad) > _SHOWN_BAD_LINES:
        click.echo(f"skipped {len(bad) - _SHOWN_BAD_LINES} more bad lines", err=True)
    click.echo(f"imported {imported:,} spans from {file.name}; {len(bad):,} bad lines skipped")
    if bad:
        sys.exit(1)


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
@_with_settings
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
        command=_command_line(settings),
    )
    with _reported(param_hint="'--redis-url'"):
        if serve_dashboard:
            _run_until_stopped(job)
        else:
            asyncio.run(job)


def _command_line(settings: _Settings) -> str:
    """``asynctrace`` with the connection options that reach ``settings``' Redis.

    A URL from REDIS_URL is left out (the same shell reads it again); one given as
    --redis-url is repeated, its password as ``***``: output never shows a password.
    """
    words = ["asynctrace"]
    if settings.is_redis_url_an_option:
        words += ["--redis-url", _without_password(settings.redis_url)]
    if settings.prefix != keys.DEFAULT_PREFIX:
        words += ["--prefix", settings.prefix]
    return shlex.join(words)


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=_PORT, default=8080, show_default=True, help="Port to listen on.")
@click.option(
    "--token",
    envvar="ASYNCTRACE_TOKEN",
    show_envvar=True,
    help="Require this token on every request (needed off loopback).",
)
@_with_settings
def serve(settings: _Settings, host: str, port: int, token: str | None) -> None:
    """Serve the dashboard on the stored traces until Ctrl-C."""
    try:
        from asynctrace.web import serve as serve_dashboard
    except ImportError:
        raise click.ClickException(
            "the dashboard needs the 'web' extra: pip install 'asynctrace[web]'"
        ) from None

    store = _store(settings)

    def announce(url: str) -> None:
        click.echo(f"serving the dashboard on {url} (Ctrl-C to stop)")

    async def dashboard() -> None:
        async with store:
            await serve_dashboard(store, host=host, port=port, token=token, on_listening=announce)

    _serve_until_stopped(dashboard, host, port)


@main.command(short_help="Receive OpenTelemetry spans (OTLP/HTTP) into the trace store.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=_PORT, default=4318, show_default=True, help="Port to listen on.")
@click.option(
    "--token",
    envvar="ASYNCTRACE_TOKEN",
    show_envvar=True,
    help="Require 'Authorization: Bearer TOKEN' on every request (needed off loopback).",
)
@_with_settings
def receive(settings: _Settings, host: str, port: int, token: str | None) -> None:
    """Serve OTLP/HTTP POST /v1/traces (JSON; protobuf with the otlp extra) until Ctrl-C.

    Spans are written to --redis-url as asynctrace's own exporter writes them.
    """
    from asynctrace.receiver import serve as serve_receiver

    def announce(url: str) -> None:
        click.echo(f"receiving OTLP on {url} (Ctrl-C to stop)")

    async def receiver() -> None:
        await serve_receiver(
            settings.redis_url,
            host=host,
            port=port,
            token=token,
            prefix=settings.prefix,
            on_listening=announce,
        )

    _serve_until_stopped(receiver, host, port)


def _serve_until_stopped(server: Callable[[], Awaitable[None]], host: str, port: int) -> None:
    """Run ``server()`` until Ctrl-C. A port that cannot be bound is one error line
    (status 1); a public address without a token, or a bad token, which the servers
    refuse with ``ValueError`` before opening a socket, is a usage error (status 2)."""

    async def run() -> None:
        try:
            await server()
        except OSError as exc:
            raise AsynctraceError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None

    with _reported():
        try:
            _run_until_stopped(run())
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None


def _run_until_stopped(job: Coroutine[Any, Any, object]) -> None:
    """``asyncio.run`` a job that runs until Ctrl-C, the normal way to stop it."""
    try:
        asyncio.run(job)
    except KeyboardInterrupt:
        click.echo("stopped")


if __name__ == "__main__":
    main()

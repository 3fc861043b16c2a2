"""The command line's rough edges (issue 15): a bare install, connection options after
the command, a bare ``asynctrace``, ``serve --port 0`` and the demo's hints."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from click.testing import CliRunner, Result

from asynctrace.cli import _command_line, _Settings, main
from tests.blocked_imports import python_without
from tests.cli.cli_traces import SEED_ID, export, recent_start, seed_trace

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = sorted(main.commands)


def invoke(*args: str, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(
        main, list(args), env={"COLUMNS": "80", "REDIS_URL": None, **(env or {})}
    )


# -- a bare install ------------------------------------------------------------------------


def test_without_click_the_command_names_its_extra_in_one_line(tmp_path: Path) -> None:
    out = python_without(["click"], ["-m", "asynctrace", "show", SEED_ID], tmp_path)
    assert out.returncode == 1
    assert out.stdout == ""
    assert out.stderr == (
        "error: the asynctrace command needs the 'cli' extra: pip install 'asynctrace[cli]'\n"
    )


def test_serve_without_the_web_extra_names_it_in_one_line(tmp_path: Path) -> None:
    out = python_without(["aiohttp_jinja2"], ["-m", "asynctrace", "serve"], tmp_path)
    assert (out.returncode, out.stdout) == (1, "")
    assert out.stderr == (
        "error: the dashboard needs the 'web' extra: pip install 'asynctrace[web]'\n"
    )


@pytest.mark.timeout(60)
def test_demo_serve_without_the_web_extra_stops_before_the_demo_runs(
    tmp_path: Path, redis_url: str
) -> None:
    out = python_without(
        ["jinja2"],
        ["-m", "asynctrace", "demo", "--serve", "--redis-url", redis_url, "--prefix", "web15:"],
        tmp_path,
    )
    assert out.returncode == 1
    assert "started" not in out.stdout
    assert out.stderr == (
        "error: the dashboard needs the 'web' extra: pip install 'asynctrace[web]'\n"
    )


def test_the_installed_command_is_the_entry_point_that_checks_for_click() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert '\nasynctrace = "asynctrace.__main__:main"\n' in pyproject


# -- connection options --------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_shows_the_connection_options_in_its_help(command: str) -> None:
    result = invoke(command, "--help")
    assert result.exit_code == 0, result.output
    assert re.search(r"^  --redis-url URL ", result.stdout, re.MULTILINE)
    assert re.search(r"^  --prefix TEXT ", result.stdout, re.MULTILINE)


def test_connection_options_work_after_the_command(redis_url: str) -> None:
    export(redis_url, seed_trace(recent_start()), prefix="issue15:")
    after = invoke("show", SEED_ID, "--redis-url", redis_url, "--prefix", "issue15:")
    before = invoke("--redis-url", redis_url, "--prefix", "issue15:", "show", SEED_ID)
    assert after.exit_code == 0, after.output
    assert after.stdout == before.stdout
    assert after.stdout.startswith(f"trace {SEED_ID}")


def test_options_after_the_command_win_over_those_before_and_the_environment(
    redis_url: str,
) -> None:
    export(redis_url, seed_trace(recent_start()), prefix="issue15b:")
    result = invoke(
        "--prefix",
        "elsewhere:",
        "show",
        SEED_ID,
        "--prefix",
        "issue15b:",
        "--redis-url",
        redis_url,
        env={"REDIS_URL": "redis://127.0.0.1:1/0"},
    )
    assert result.exit_code == 0, result.output
    assert SEED_ID in result.stdout


# -- the terminal's width --------------------------------------------------------------------


def test_a_huge_terminal_width_draws_at_most_1000_columns(redis_url: str) -> None:
    # COLUMNS=300000000 made each waterfall row that long: a MemoryError traceback.
    # (5000 shows the cap without the memory a regression would then take.)
    export(redis_url, seed_trace(recent_start()), prefix="issue15w:")
    result = invoke(
        "show", SEED_ID, "--redis-url", redis_url, "--prefix", "issue15w:",
        env={"COLUMNS": "5000"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.stdout.splitlines()) == 1000


# -- a bare asynctrace ---------------------------------------------------------------------


def test_a_bare_asynctrace_prints_the_usage_on_several_lines() -> None:
    result = invoke()
    assert result.exit_code == 0
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0] == "Usage: asynctrace [OPTIONS] COMMAND [ARGS]..."
    assert "Commands:" in lines
    assert all(len(line) <= 100 for line in lines)
    assert result.stdout == invoke("--help").stdout


# -- serve / receive --port 0 -------------------------------------------------------------


@asynccontextmanager
async def listening(command: str, redis_url: str, announcement: str) -> AsyncIterator[str]:
    """Run ``asynctrace COMMAND --port 0 --redis-url URL`` (the connection option after
    the command); yield the URL its first line announces, which must fully match
    ``announcement`` (group 1 the URL, group 2 the port). Ctrl-C stops it, without a
    traceback."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "asynctrace",
        command,
        "--port",
        "0",
        "--redis-url",
        redis_url,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(30):
            line = (await process.stdout.readline()).decode()
        found = re.fullmatch(announcement, line)
        assert found is not None, line
        assert int(found[2]) > 0
        yield found[1]
    finally:
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            _, stderr = await process.communicate()
    assert b"Traceback" not in stderr, stderr.decode()


@pytest.mark.timeout(60)
async def test_serve_on_port_0_prints_the_address_it_listens_on(redis_url: str) -> None:
    pattern = r"serving the dashboard on (http://127\.0\.0\.1:(\d+)/) .*\n"
    async with (
        listening("serve", redis_url, pattern) as url,
        aiohttp.ClientSession() as session,
        session.get(url + "api/health") as response,
    ):
        assert response.status == 200


@pytest.mark.timeout(60)
async def test_receive_on_port_0_prints_the_address_it_listens_on(redis_url: str) -> None:
    pattern = r"receiving OTLP on (http://127\.0\.0\.1:(\d+)/v1/traces) .*\n"
    async with (
        listening("receive", redis_url, pattern) as url,
        aiohttp.ClientSession() as session,
        session.post(url, json={"resourceSpans": []}) as response,
    ):
        assert response.status == 200, await response.text()


# -- the demo's hints ----------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_the_demos_hints_work_as_printed(redis_url: str) -> None:
    demo = invoke("demo", "--redis-url", redis_url, "--prefix", "demo15:", env={"COLUMNS": "100"})
    assert demo.exit_code == 0, demo.output
    hints = re.findall(r"\((asynctrace [^)]*)\):\n", demo.stdout)
    hints += re.findall(r"`(asynctrace [^`]*)`", demo.stdout.splitlines()[-1])
    assert len(hints) == 6, hints
    for hint in hints:
        words = shlex.split(hint)
        assert words[1:5] == ["--redis-url", redis_url, "--prefix", "demo15:"]
        if words[5] == "serve":
            continue  # runs until Ctrl-C; its options are the same
        result = invoke(*words[1:])
        assert result.exit_code == 0, (hint, result.output)
        trace_ids = re.findall(r"\b[0-9a-f]{32}\b", hint)
        assert all(trace_id in result.stdout for trace_id in trace_ids)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@db.internal:6380/2", "'redis://:***@db.internal:6380/2'"),
        ("redis://ops:s3cret@db.internal/0", "'redis://ops:***@db.internal/0'"),
        ("redis://db.internal:6379/0?name=x&y=1", "'redis://db.internal:6379/0?name=x&y=1'"),
    ],
)
def test_the_demos_command_line_never_shows_a_password(url: str, shown: str) -> None:
    settings = _Settings(
        redis_url=url, prefix="trace:", is_redis_url_given=True, is_redis_url_an_option=True
    )
    assert _command_line(settings) == f"asynctrace --redis-url {shown}"


def test_a_redis_url_from_the_environment_is_not_repeated_in_hints() -> None:
    settings = _Settings(
        redis_url="redis://:s3cret@db:6379/0", prefix="t:", is_redis_url_given=True
    )
    assert _command_line(settings) == "asynctrace --prefix t:"

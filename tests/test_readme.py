"""The README's two commands are the ones CI runs and the package provides."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import click
import pytest
from click.testing import CliRunner

import asynctrace
from asynctrace.cli import main as cli_main
from asynctrace.testing import free_port

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```bash\n(.+?)\n```", text)


def test_readme_opens_with_demo_then_test_command() -> None:
    demo, tests = readme_commands()[:2]
    assert demo == "python -m pip install -e '.[demo]' && asynctrace demo"
    assert tests == "python -m pip install -e '.[dev]' && python -m pytest"


def test_ci_runs_the_readme_test_command_exactly() -> None:
    test_command = readme_commands()[1]
    ci_script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert f'TEST_COMMAND="{test_command}"' in ci_script
    assert 'bash -c "$TEST_COMMAND"' in ci_script


def test_public_names_are_exactly_all() -> None:
    public = {
        name
        for name, value in vars(asynctrace).items()
        if not name.startswith("_")
        and not inspect.ismodule(value)
        and name != "annotations"  # from __future__ import annotations
    }
    assert set(asynctrace.__all__) == public
    assert asynctrace.__all__ == sorted(asynctrace.__all__)


# -- every code block runs ----------------------------------------------------------------

README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_REDIS_URL = "redis://localhost:6379/0"
BAR = re.compile("[█░]")


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)


def service_block() -> str:
    (service,) = [block for block in blocks("python") if "web.run_app(" in block]
    return service


def span_labels(waterfall: str) -> list[str]:
    """The indented "service operation" labels of a waterfall's span rows."""
    return [
        BAR.split(line, maxsplit=1)[0].rstrip()
        for line in waterfall.splitlines()
        if line.startswith("  ") and BAR.search(line)
    ]


async def _serve_once(script: Path, port: int, path: str) -> tuple[str, int | None, bytes]:
    """Start ``script``, send it one request, stop it: (X-Trace-ID, exit status, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(30):
            while b"Running on" not in (line := await process.stdout.readline()):
                assert line, "the service exited before listening"
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}{path}") as response,
        ):
            assert response.status == 200
            assert await response.json() == {"id": "42", "status": "paid", "stock": "in stock"}
            trace_id = response.headers["X-Trace-ID"]
    finally:
        # Stopping runs the app's cleanup, whose asynctrace.shutdown() exports the spans.
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            _, stderr = await process.communicate()
    return trace_id, process.returncode, stderr


@pytest.mark.timeout(60)
def test_the_quick_start_service_serves_a_request_and_its_trace_shows(
    redis_url: str, tmp_path: Path
) -> None:
    source = service_block()
    assert source.count(README_REDIS_URL) == 1
    assert source.count("port=8080") == 1
    port = free_port()
    script = tmp_path / "orders.py"
    script.write_text(
        source.replace(README_REDIS_URL, redis_url).replace("port=8080", f"port={port}")
    )
    # The request the README's curl sends, to the service run as the README says.
    (console, _) = blocks("console")
    path = re.search(r"curl -si http://127\.0\.0\.1:8080(/\S+)", console)
    assert path is not None
    trace_id, status, stderr = asyncio.run(_serve_once(script, port, path[1]))
    assert status == 0, stderr.decode()
    assert stderr == b""

    # `asynctrace show ID` as the README shows it: the same span rows, in the same order.
    shown_command = re.search(r"^\$ (asynctrace show [0-9a-f]{32})$", console, re.MULTILINE)
    assert shown_command is not None
    args = [*shlex.split(shown_command[1])[1:-1], trace_id]
    result = CliRunner().invoke(cli_main, args, env={"REDIS_URL": redis_url, "COLUMNS": "88"})
    assert result.exit_code == 0, result.output
    readme_output = console.split(shown_command[0], 1)[1]
    real_output = result.stdout.replace(f"127.0.0.1:{port}", "127.0.0.1:8080")
    assert len(span_labels(readme_output)) == 5
    assert span_labels(real_output) == span_labels(readme_output)
    assert real_output.splitlines()[0].endswith("5 spans  1 service")
    assert readme_output.splitlines()[1].endswith("5 spans  1 service")
    assert "\norders is the bottleneck: " in real_output


@pytest.mark.timeout(60)
def test_every_fragment_block_runs_with_the_names_it_assumes(redis_url: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tests.readme_blocks", str(README), redis_url],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    fragments = [block for block in blocks("python") if "web.run_app(" not in block]
    assert len(report["blocks"]) == len(fragments) >= 6
    for block in report["blocks"]:
        assert block["error"] is None, block
    names = {name: kind for block in report["blocks"] for name, kind in block["names"].items()}
    assert names["session"] == "ClientSession"
    assert names["store"] == "TraceStore"
    # The reading block found the trace the harness stored; the span block's spans exported.
    found = [block["trace_id"] for block in report["blocks"] if block["trace_id"]]
    assert found == [report["harness_trace_id"]]
    assert report["exported"] >= 3


def _command_options(command: click.Command) -> set[str]:
    return {option for param in command.params for option in param.opts}


def test_every_asynctrace_command_shown_exists_with_those_options() -> None:
    text = README.read_text(encoding="utf-8")
    typed = [
        line.removeprefix("$ ")
        for block in blocks("console")
        for line in block.splitlines()
        if line.startswith("$ asynctrace ")
    ]
    assert typed
    for line in typed:
        # click parses the line as the command would, without running it.
        words = shlex.split(line)[1:]
        at = next(index for index, word in enumerate(words) if word in cli_main.commands)
        context = cli_main.make_context("asynctrace", words[: at + 1])
        cli_main.commands[words[at]].make_context(words[at], words[at + 1 :], parent=context)
    mentioned = re.findall(r"`(asynctrace [^`]+)`", text)
    assert len(mentioned) > 10
    group_options = _command_options(cli_main)
    for mention in mentioned:
        words = mention.split()
        command = cli_main.commands.get(words[1])
        assert command is not None, mention
        options = set(re.findall(r"--[a-z][a-z-]*", mention))
        assert options <= _command_options(command) | group_options, mention


def test_every_benchmark_the_readme_and_docs_name_exists() -> None:
    from benchmarks.__main__ import SCENARIOS
    from benchmarks.instructions import CASES

    # The README and the docs it links to (docs/performance.md holds the derivations).
    text = "\n".join(
        path.read_text(encoding="utf-8") for path in (README, *sorted(DOCS.glob("*.md")))
    )
    scenarios = re.findall(r"python -m benchmarks ([a-z]+)", text)
    cases = re.findall(r"python -m benchmarks\.instructions ([a-z]+)", text)
    assert scenarios
    assert cases
    assert set(scenarios) <= set(SCENARIOS)
    assert set(cases) <= set(CASES)

"""``python -m benchmarks --quick`` runs every scenario and reports in the right shape.

Only the shape is checked, never a timing: each scenario runs once, quickly, in its
own process (all at once), and must print its table and write its JSON. Every other
scenario runs on uvloop (``--loop uvloop``), so both loops are exercised, the served
apps and load loops of the HTTP scenarios included.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from asynctrace.tracer import reset_tracer
from benchmarks import instructions
from benchmarks.__main__ import SCENARIOS
from benchmarks.instructions import CASES
from benchmarks.loops import LOOPS
from tests.blocked_imports import python_without

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(240)
def test_every_scenario_runs_quickly_and_reports_tables_and_json(tmp_path: Path) -> None:
    # wrk only when it is already there: the suite never installs packages.
    load_tool = "auto" if shutil.which("wrk") else "loop"
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    loops = {name: LOOPS[number % 2] for number, name in enumerate(SCENARIOS)}
    runs = {
        name: subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks",
                name,
                "--quick",
                "--loop",
                loops[name],
                "--load-tool",
                load_tool,
                "--json",
                str(tmp_path / f"{name}.json"),
            ],
            cwd=ROOT,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in SCENARIOS
    }
    outputs = {}
    try:
        for name, process in runs.items():
            stdout, stderr = process.communicate(timeout=200)
            assert process.returncode == 0, f"{name} failed:\n{stderr[-3000:]}"
            outputs[name] = stdout
    finally:
        for process in runs.values():
            if process.poll() is None:
                process.kill()
                process.communicate()

    for number, name in enumerate(SCENARIOS, start=1):
        stdout = outputs[name]
        assert f"== {number}. " in stdout
        report = json.loads((tmp_path / f"{name}.json").read_text())
        assert report["quick"] is True
        assert report["command"].startswith("python -m benchmarks")
        assert report["machine"]["cpu_count"] >= 1
        assert report["machine"]["loop"] == loops[name]
        assert f", {loops[name]} loop\n" in stdout
        assert report["packages"]["asynctrace"]
        scenario = report["scenarios"][name]
        assert scenario["title"].startswith(f"{number}. ")
        assert scenario["rows"]
        assert all(len(row) == len(scenario["columns"]) for row in scenario["rows"])
        for target in scenario["targets"]:
            assert set(target) == {"text", "measured", "met"}
            assert target["met"] in (True, False, None)
            assert f"] {target['text']}: " in stdout
    # The export scenario measures its ceiling: making the commands, and moving them.
    export = json.loads((tmp_path / "export.json").read_text())["scenarios"]["export"]
    data = export["data"]
    making = data["commands_only_cpu_spans_per_s"]["median"]
    moving = data["transport_only_cpu_spans_per_s"]["median"]
    assert 0 < data["ceiling_spans_per_s"] < min(making, moving)
    assert any(note.startswith("ceiling on one core") for note in export["notes"])


# The OpenTelemetry SDK may be installed without its aiohttp server instrumentation
# (a separate package): its comparisons are then left out with a note, never a crash.
_NO_OTEL_AIOHTTP = ["opentelemetry.instrumentation.aiohttp_server"]


@pytest.mark.timeout(120)
def test_the_middleware_scenario_without_the_aiohttp_instrumentation_says_not_installed(
    tmp_path: Path,
) -> None:
    out = python_without(
        _NO_OTEL_AIOHTTP,
        ["-m", "benchmarks", "middleware", "--quick", "--json", str(tmp_path / "r.json")],
        tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    scenario = json.loads((tmp_path / "r.json").read_text())["scenarios"]["middleware"]
    assert not any("OpenTelemetry" in row[0] for row in scenario["rows"])
    assert any("not installed" in note for note in scenario["notes"]), scenario["notes"]


def test_the_loopback_scenario_without_the_aiohttp_instrumentation_serves_no_otel_app(
    tmp_path: Path,
) -> None:
    # The loopback scenario started an "otel" app process that could not build, which
    # crashed the run; its variants now leave that app out. (The whole scenario runs in
    # test_every_scenario_runs_quickly_and_reports_tables_and_json.)
    code = (
        "import json; from benchmarks import http_loopback; "
        "print(json.dumps(http_loopback.variants()))"
    )
    out = python_without(_NO_OTEL_AIOHTTP, ["-c", code], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    modes, why_not = json.loads(out.stdout)
    assert "otel" not in modes.values()
    assert "bare" in modes.values()
    assert "not installed" in why_not


def test_an_unknown_scenario_is_refused_with_the_list_of_names() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks", "nope"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "unknown scenario(s) nope" in out.stderr
    assert all(name in out.stderr for name in SCENARIOS)


@pytest.mark.parametrize(
    "case", [(case, variant) for case, (_, variants, _) in CASES.items() for variant in variants]
)
def test_every_instruction_count_workload_runs(case: tuple[str, str]) -> None:
    # The workloads valgrind counts, run once without it: only that they work.
    name, variant = case
    try:
        assert instructions.main(["--child", name, variant, "20"]) == 0
    finally:
        reset_tracer()  # the workloads configure the global tracer

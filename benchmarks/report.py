"""Result tables, target checks and the JSON report with machine and package facts."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "ScenarioResult",
    "Table",
    "Target",
    "machine_info",
    "package_versions",
    "ratio",
    "render",
    "write_json",
]

PACKAGES = (
    "asynctrace",
    "aiohttp",
    "redis",
    "hiredis",
    "multidict",
    "yarl",
    "opentelemetry-api",
    "opentelemetry-sdk",
    "opentelemetry-instrumentation-aiohttp-server",
    "starlette",
    "httpx",
    "opentelemetry-instrumentation-asgi",
    "opentelemetry-instrumentation-httpx",
    "opentelemetry-instrumentation-redis",
)


@dataclass(slots=True)
class Table:
    """One printed table: a title, column names, rows of already formatted cells."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Target:
    """A target of the speed issues (7, 20), checked against this run; ``met`` None:
    not measured."""

    text: str
    measured: str
    met: bool | None


@dataclass(slots=True)
class ScenarioResult:
    name: str
    table: Table
    targets: list[Target] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


def ratio(value: float, reference: float) -> str:
    if reference == 0 or value != value or reference != reference:
        return "n/a"
    return f"{value / reference:.2f}x"


def render(result: ScenarioResult) -> str:
    table = result.table
    widths = [len(column) for column in table.columns]
    for row in table.rows:
        for number, cell in enumerate(row):
            widths[number] = max(widths[number], len(cell))

    def line(cells: list[str]) -> str:
        out = [cells[0].ljust(widths[0])]
        out.extend(cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
        return "  ".join(out).rstrip()

    rule = "-" * len(line(table.columns))
    lines = [f"== {table.title}", line(table.columns), rule]
    lines.extend(line(row) for row in table.rows)
    for note in table.notes:
        lines.append(f"  note: {note}")
    for target in result.targets:
        mark = {True: "MET", False: "NOT MET", None: "n/a"}[target.met]
        lines.append(f"  target [{mark}] {target.text}: {target.measured}")
    return "\n".join(lines)


def _command_version(command: list[str]) -> str | None:
    if shutil.which(command[0]) is None:
        return None
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else None


def machine_info() -> dict[str, Any]:
    cpu_model = platform.processor() or "unknown"
    try:
        for text in Path("/proc/cpuinfo").read_text().splitlines():
            if text.startswith("model name"):
                cpu_model = text.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "redis_server": _command_version(["redis-server", "--version"]),
        "wrk": _command_version(["wrk", "--version"]),
    }


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def write_json(
    path: Path,
    results: list[ScenarioResult],
    *,
    command: str,
    quick: bool,
    machine: dict[str, Any],
) -> None:
    document = {
        "command": command,
        "quick": quick,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine,
        "packages": package_versions(),
        "scenarios": {
            result.name: {
                "title": result.table.title,
                "columns": result.table.columns,
                "rows": result.table.rows,
                "notes": result.table.notes,
                "targets": [
                    {"text": t.text, "measured": t.measured, "met": t.met} for t in result.targets
                ],
                "data": result.data,
            }
            for result in results
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")

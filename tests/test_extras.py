"""A bare install: every module imports, or refuses in one ImportError naming its extra.

``pip install asynctrace`` has none of the optional extras (cli, web, demo, otlp);
each test runs a subprocess in which their libraries cannot be imported.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.blocked_imports import python_without

# The libraries of the cli, web, demo and otlp extras.
EXTRAS_LIBRARIES = [
    "click",
    "aiohttp_jinja2",
    "jinja2",
    "fakeredis",
    "opentelemetry.proto",
    "google.protobuf",
]

# Imports every module a user may name and reports how each ended, as JSON.
_IMPORT_ALL = """
import importlib, json
ended = {}
for name in NAMES:
    try:
        importlib.import_module(name)
        ended[name] = "ok"
    except ImportError as exc:
        ended[name] = f"ImportError: {exc}"
print(json.dumps(ended))
"""


def import_all(names: list[str], blocked: list[str], tmp_path: Path) -> dict[str, str]:
    out = python_without(blocked, ["-c", f"NAMES = {names!r}\n{_IMPORT_ALL}"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    ended: dict[str, str] = json.loads(out.stdout)
    return ended


def test_the_library_imports_without_any_extra(tmp_path: Path) -> None:
    names = [
        "asynctrace",
        "asynctrace.aiohttp",
        "asynctrace.analysis",
        "asynctrace.demo",
        "asynctrace.export",
        "asynctrace.export.otlp",
        "asynctrace.logs",
        "asynctrace.model.otlp",
        "asynctrace.receiver",
        "asynctrace.store",
        "asynctrace.terminal",
        "asynctrace.testing",
    ]
    assert import_all(names, EXTRAS_LIBRARIES, tmp_path) == dict.fromkeys(names, "ok")


@pytest.mark.parametrize(
    ("module", "library", "extra"),
    [
        ("asynctrace.cli", "click", "cli"),
        ("asynctrace.web", "aiohttp_jinja2", "web"),
        ("asynctrace.web", "jinja2", "web"),
    ],
)
def test_an_app_without_its_extra_is_one_import_error_naming_it(
    module: str, library: str, extra: str, tmp_path: Path
) -> None:
    ended = import_all([module], [library], tmp_path)
    assert ended == {
        module: f"ImportError: {module} needs the '{extra}' extra: "
        f"pip install 'asynctrace[{extra}]'"
    }


_OTLP_EXPORTER = """
from asynctrace.export import OTLPExporter
print(OTLPExporter().encoding)
try:
    OTLPExporter(encoding="protobuf")
except ValueError as exc:
    print(f"ValueError: {exc}")
"""


def test_without_the_otlp_extra_the_exporter_sends_json_and_refuses_protobuf(
    tmp_path: Path,
) -> None:
    # Asked for protobuf, it used to fail every batch at export time and drop it.
    out = python_without(["opentelemetry.proto"], ["-c", _OTLP_EXPORTER], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.splitlines() == [
        "json",
        "ValueError: encoding='protobuf' needs opentelemetry-proto: "
        "pip install 'asynctrace[otlp]', or pass encoding='json'",
    ]

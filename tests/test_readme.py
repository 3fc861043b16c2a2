"""The README's two commands are the ones CI runs and the package provides."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import asynctrace

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

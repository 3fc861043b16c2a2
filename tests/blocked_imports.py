"""Run a Python command as if some packages were not installed.

``python_without(["click"], ...)`` starts a subprocess whose ``sitecustomize`` puts a
meta-path finder first that refuses those top-level packages (or dotted submodules)
with ``ModuleNotFoundError``, exactly as a bare install would; the rest of the
environment is this one's, with the worktree first on ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["python_without"]

ROOT = Path(__file__).resolve().parent.parent

_SITECUSTOMIZE = """\
import importlib.abc
import sys

BLOCKED = {blocked!r}


class _Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, _Blocker())
"""


def python_without(
    blocked: Sequence[str],
    args: Sequence[str],
    directory: Path,
    *,
    env: dict[str, str] | None = None,
    timeout: float = 120.0,
) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` with ``blocked`` modules unimportable; ``directory`` holds the hook."""
    hook = directory / "blocker"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(_SITECUSTOMIZE.format(blocked=tuple(blocked)))
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(hook), str(ROOT)]),
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )

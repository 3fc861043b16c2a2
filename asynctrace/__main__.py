"""The ``asynctrace`` command's entry point: the CLI, or one line naming its extra.

A bare ``pip install asynctrace`` installs the command without click (it is the
``cli`` extra), so the CLI is imported here, inside ``main``, where its absence
becomes one line on stderr and exit status 1 instead of a traceback.
``python -m asynctrace`` runs the same.
"""

from __future__ import annotations

import sys

__all__ = ["main"]


def main() -> None:
    """Run the ``asynctrace`` command line; exit 1 with one line when click is missing."""
    try:
        from asynctrace.cli import main as cli
    except ImportError as exc:
        # asynctrace.cli names the extra in an ImportError whose name is click's.
        if exc.name is None or exc.name.partition(".")[0] != "click":
            raise
        sys.stderr.write(
            "error: the asynctrace command needs the 'cli' extra: pip install 'asynctrace[cli]'\n"
        )
        sys.exit(1)
    cli(prog_name="asynctrace")


if __name__ == "__main__":
    main()

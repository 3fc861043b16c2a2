"""Rate-limited reporting of asynctrace's own failures.

Tracing runs inside someone else's service, so an internal failure must be seen
once (with its traceback) and then stay quiet: repeats of the same kind are
counted and summarised in one line after a window, never logged one by one.
"""

from __future__ import annotations

import logging
import threading
import time

__all__ = ["internal_error_count", "report_internal_error"]

logger = logging.getLogger("asynctrace")

WINDOW_S = 60.0

_lock = threading.Lock()
_first_seen: dict[str, float] = {}
_suppressed: dict[str, int] = {}
_total = 0


def report_internal_error(kind: str, exc: BaseException | None = None, *, detail: str = "") -> None:
    """Count an internal failure and log it, at most once per kind per window.

    Never raises and never logs header values or span payloads: ``detail`` must be
    written by asynctrace itself.
    """
    global _total
    try:
        now = time.monotonic()
        with _lock:
            _total += 1
            first = _first_seen.get(kind)
            if first is not None and now - first < WINDOW_S:
                _suppressed[kind] = _suppressed.get(kind, 0) + 1
                return
            repeats = _suppressed.pop(kind, 0)
            _first_seen[kind] = now
        if repeats:
            logger.warning(
                "asynctrace: %s happened %d more times in the last %.0f s", kind, repeats, WINDOW_S
            )
        logger.warning(
            "asynctrace: %s%s",
            kind,
            f" ({detail})" if detail else "",
            exc_info=exc if exc is not None else False,
        )
    except Exception:
        return  # the reporter of last resort must never raise into the caller


def internal_error_count() -> int:
    """How many internal failures were reported since the process started."""
    return _total


def reset_for_tests() -> None:
    """Forget what was reported, so each test sees first-time logging."""
    global _total
    with _lock:
        _first_seen.clear()
        _suppressed.clear()
        _total = 0

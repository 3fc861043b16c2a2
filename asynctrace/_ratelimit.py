"""Rate-limited reporting of asynctrace's own failures.

Tracing runs inside someone else's service, so a failure must be seen once and
then stay quiet: repeats of the same kind are counted and summarised in one line
after a window, never logged one by one. A bug in asynctrace's own code is logged
with its traceback; an expected condition (Redis down, slow or refusing writes) is
one line naming the cause.
"""

from __future__ import annotations

import logging
import os
import threading
import time

__all__ = ["internal_error_count", "report_expected", "report_internal_error"]

logger = logging.getLogger("asynctrace")

WINDOW_S = 60.0
# The longest cause text a one-line report carries (Redis error replies can be long).
_MAX_CAUSE = 300

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
        with _lock:
            _total += 1
        if not _is_due(kind):
            return
        logger.warning(
            "asynctrace: %s%s",
            kind,
            f" ({detail})" if detail else "",
            exc_info=exc if exc is not None else False,
        )
    except Exception:
        return  # the reporter of last resort must never raise into the caller


def report_expected(kind: str, cause: BaseException | str) -> None:
    """Log an expected condition in one line (no traceback), at most once per kind
    per window; repeats are summarised in one line when the window is over.

    Not counted as an internal error. ``cause`` is an exception (its type and text
    are logged, the chain is not) or a text asynctrace wrote. Never raises.
    """
    try:
        if not _is_due(kind):
            return
        if isinstance(cause, BaseException):
            text = f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__
        else:
            text = cause
        logger.warning("asynctrace: %s: %s", kind, " ".join(text.split())[:_MAX_CAUSE])
    except Exception:
        return


def _is_due(kind: str) -> bool:
    """True when ``kind`` may be logged now; logs the summary of suppressed repeats."""
    now = time.monotonic()
    with _lock:
        first = _first_seen.get(kind)
        if first is not None and now - first < WINDOW_S:
            _suppressed[kind] = _suppressed.get(kind, 0) + 1
            return False
        repeats = _suppressed.pop(kind, 0)
        _first_seen[kind] = now
    if repeats:
        logger.warning(
            "asynctrace: %s happened %d more times in the last %.0f s", kind, repeats, WINDOW_S
        )
    return True


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


def _after_fork_in_child() -> None:
    # The parent's lock may have been held by another thread at the fork.
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)

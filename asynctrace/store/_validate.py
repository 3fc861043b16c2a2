"""Validation of query arguments: everything from a person is checked before it
reaches Redis, and refused with ``InvalidQueryError`` before any I/O."""

from __future__ import annotations

import math
import re
import time
from datetime import date

from asynctrace import keys
from asynctrace.errors import InvalidQueryError
from asynctrace.ids import is_valid_trace_id
from asynctrace.model import utc_day

DEFAULT_SCAN_LIMIT = 10_000
"""How many index entries listing and search read at most (newest first)."""


_MAX_QUERY_LIMIT = 1000


# Time arguments are epoch ms from 1970 up to the end of year 9999: UTC hours and
# days are named with datetime, which has no year 10000.
_END_OF_9999_MS = 253_402_300_800_000.0


_MAX_FILTER_LENGTH = 1000


_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _valid_trace_id(value: object) -> str:
    # The message never echoes the value: it may be a hostile string from a URL.
    if isinstance(value, str):
        lowered = value.lower()
        if is_valid_trace_id(lowered):
            return lowered
    raise InvalidQueryError("a trace id is 32 hex digits, not all zero")


def _valid_scan_limit(value: object) -> int:
    # A constructor argument, so ValueError (STYLE: fail fast at setup).
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not 1 <= value <= keys.INDEX_MAX_ENTRIES
    ):
        raise ValueError(f"scan_limit must be an integer from 1 to {keys.INDEX_MAX_ENTRIES}")
    return value


def _valid_url(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidQueryError("the Redis URL must be a non-empty string")
    return value


def _valid_limit(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_QUERY_LIMIT:
        raise InvalidQueryError(f"limit must be an integer from 1 to {_MAX_QUERY_LIMIT}")
    return value


def _valid_number(value: object, name: str) -> float | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise InvalidQueryError(f"{name} must be a finite number, at least 0")
    return float(value)


def _valid_time(value: object, name: str) -> float | None:
    checked = _valid_number(value, name)
    if checked is not None and checked >= _END_OF_9999_MS:
        raise InvalidQueryError(f"{name} must be epoch milliseconds within the years 1970 to 9999")
    return checked


def _valid_weeks(value: object) -> int:
    # Aggregates are kept 35 days: five whole weeks.
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
        raise InvalidQueryError("weeks must be an integer from 1 to 5")
    return value


def _valid_filter(value: object, name: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidQueryError(f"{name} must be a string")
    if len(value) > _MAX_FILTER_LENGTH:
        raise InvalidQueryError(f"{name} must be at most {_MAX_FILTER_LENGTH} characters")
    if not value.isascii() and _SURROGATE.search(value):
        # Stored names are valid UTF-8, so no such name exists; a key cannot hold it.
        raise InvalidQueryError(f"{name} must be valid text (it holds undecodable bytes)")
    return value


def _valid_day(value: object) -> str:
    if isinstance(value, str) and _DAY.fullmatch(value):
        try:
            date.fromisoformat(value)
        except ValueError:
            pass
        else:
            return value
    raise InvalidQueryError("day must be a calendar date written YYYY-MM-DD")


def _today() -> str:
    return utc_day(time.time() * 1000.0)

"""Trace and span id generation from a pooled CSPRNG buffer.

Drawing 8 bytes from ``os.urandom`` per span costs a system call; instead one call
fills a pool of ready-made hex ids, and ``list.pop`` (atomic under the GIL) hands
them out, so threads never see the same id twice.
"""

from __future__ import annotations

import os

__all__ = ["is_valid_span_id", "is_valid_trace_id", "new_span_id", "new_trace_id"]

_POOL_IDS = 512
_ZERO_SPAN_ID = "0" * 16
_HEX_DIGITS = frozenset("0123456789abcdef")

_pool: list[str] = []


# A forked child must not hand out the ids its parent still holds in the pool.
os.register_at_fork(after_in_child=_pool.clear)


def _refill() -> None:
    raw = os.urandom(8 * _POOL_IDS).hex()
    fresh = [raw[i : i + 16] for i in range(0, len(raw), 16)]
    # W3C: an all-zero id is invalid; 2**-64 per id, but never hand one out.
    _pool.extend(span_id for span_id in fresh if span_id != _ZERO_SPAN_ID)


def new_span_id() -> str:
    """Return a fresh 16-hex-digit span id (never all zeros). Never blocks."""
    try:
        return _pool.pop()
    except IndexError:
        _refill()
        return _pool.pop()


def new_trace_id() -> str:
    """Return a fresh 32-hex-digit trace id (never all zeros)."""
    return new_span_id() + new_span_id()


def _is_lower_hex(value: str, length: int) -> bool:
    return len(value) == length and _HEX_DIGITS.issuperset(value) and value != "0" * length


def is_valid_trace_id(value: object) -> bool:
    """True for 32 lowercase hex digits that are not all zero."""
    return isinstance(value, str) and _is_lower_hex(value, 32)


def is_valid_span_id(value: object) -> bool:
    """True for 16 lowercase hex digits that are not all zero."""
    return isinstance(value, str) and _is_lower_hex(value, 16)

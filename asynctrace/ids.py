"""Trace and span id generation from a pooled CSPRNG buffer.

Drawing 8 bytes from ``os.urandom`` per span costs a system call; instead one call
fills a pool of ready-made hex ids, and ``list.pop`` (atomic under the GIL) hands
them out, so threads never see the same id twice.
"""

from __future__ import annotations

import os

__all__ = ["is_valid_span_id", "is_valid_trace_id", "new_span_id", "new_trace_id"]

_POOL_BYTES = 4096
_ZERO_SPAN_ID = "0" * 16
_ZERO_TRACE_ID = "0" * 32
_HEX_DIGITS = frozenset("0123456789abcdef")

# Ready-made span ids (16 hex digits) and trace ids (32): a trace id is drawn whole,
# not joined from two span ids, since every new trace makes one.
_span_pool: list[str] = []
_trace_pool: list[str] = []


def _clear_pools() -> None:
    _span_pool.clear()
    _trace_pool.clear()


# A forked child must not hand out the ids its parent still holds in the pools.
os.register_at_fork(after_in_child=_clear_pools)


def _refill(pool: list[str], digits: int, zero: str) -> None:
    raw = os.urandom(_POOL_BYTES)
    # One C pass cuts the hex into ids: a separator every digits/2 bytes, then split.
    fresh = raw.hex(" ", digits // 2).split(" ")
    # W3C: an all-zero id is invalid; 2**-64 per id, but never hand one out. The bytes
    # are searched first (a hit off an id's boundary only costs the exact filter).
    if bytes(digits // 2) in raw:
        fresh = [new_id for new_id in fresh if new_id != zero]
    pool.extend(fresh)


# The pools' own ``pop``, for span creation, which cannot afford a function call per
# id: each raises IndexError when its pool is empty, and new_span_id()/new_trace_id()
# then refill it. (The lists are only ever cleared in place, so these stay bound.)
pop_span_id = _span_pool.pop
pop_trace_id = _trace_pool.pop


def new_span_id() -> str:
    """Return a fresh 16-hex-digit span id (never all zeros). Never blocks."""
    try:
        return _span_pool.pop()
    except IndexError:
        _refill(_span_pool, 16, _ZERO_SPAN_ID)
        return _span_pool.pop()


def new_trace_id() -> str:
    """Return a fresh 32-hex-digit trace id (never all zeros). Never blocks."""
    try:
        return _trace_pool.pop()
    except IndexError:
        _refill(_trace_pool, 32, _ZERO_TRACE_ID)
        return _trace_pool.pop()


def _is_lower_hex(value: str, length: int) -> bool:
    return len(value) == length and _HEX_DIGITS.issuperset(value) and value != "0" * length


def is_valid_trace_id(value: object) -> bool:
    """True for 32 lowercase hex digits that are not all zero."""
    return isinstance(value, str) and _is_lower_hex(value, 32)


def is_valid_span_id(value: object) -> bool:
    """True for 16 lowercase hex digits that are not all zero."""
    return isinstance(value, str) and _is_lower_hex(value, 16)

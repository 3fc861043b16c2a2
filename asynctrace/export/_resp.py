"""RESP text: the bulk strings the packed transports write commands with."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["ENCODING_ERRORS", "bulk", "bulks", "error_text"]

# Lone surrogates (aiohttp decodes header bytes with "surrogateescape") cannot be
# UTF-8 encoded; backslashreplace writes them as "\udcxx", which inside span JSON is
# the JSON escape of the same code point, so the entry still decodes to the same text.
ENCODING_ERRORS = "backslashreplace"


def bulk(text: str) -> str:
    """``text`` as one RESP bulk string (its length counted in UTF-8 bytes)."""
    size = len(text) if text.isascii() else len(text.encode("utf-8", ENCODING_ERRORS))
    return f"${size}\r\n{text}\r\n"


def bulks(texts: Sequence[str]) -> str:
    """``texts`` as consecutive bulk strings."""
    # isascii() is O(1) in CPython, and then characters are bytes: bulk's work
    # without a call per text (span JSON and aggregate fields are nearly all ASCII).
    return "".join(
        [f"${len(text)}\r\n{text}\r\n" if text.isascii() else bulk(text) for text in texts]
    )


def error_text(exc: Exception) -> str:
    """An error reply as one line: redis-py's class for it names the Redis error code
    it strips (``OutOfMemoryError`` for OOM, ``ReadOnlyError`` for READONLY); where
    a script raised it, Redis's note of the script's hash is left out."""
    text = str(exc).split(" script: ", 1)[0]
    return f"{type(exc).__name__}: {text}"

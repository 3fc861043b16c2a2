"""Milliseconds written for a person, the one way every sentence and view writes them."""

from __future__ import annotations

__all__ = ["format_ms"]


def format_ms(value: float) -> str:
    """``value`` milliseconds as text for a person, always in ms.

    - 0 and below read "0 ms" (a negative duration is clock skew, not information);
    - above 0 but under 0.1, "<0.1 ms", so a real duration never reads as zero;
    - under 10, one decimal without a trailing ".0": "4.5 ms", "0.4 ms", "5 ms";
    - from 10, whole milliseconds with thousands separators: "10 ms", "2,500 ms".

    Pure, never raises for a finite float.
    """
    if value <= 0:
        return "0 ms"
    if value < 0.1:
        return "<0.1 ms"
    if value < 10:
        # One decimal is the precision that matters below 10 ms; "5.0" reads as noise.
        return f"{value:.1f}".removesuffix(".0") + " ms"
    return f"{value:,.0f} ms"

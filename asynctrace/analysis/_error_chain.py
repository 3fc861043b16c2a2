"""The error chain of a trace: where an error started and how it travelled up."""

from __future__ import annotations

from dataclasses import dataclass

from asynctrace.model import Span, Trace

__all__ = ["ErrorChain", "ErrorHop", "error_chain"]

# OpenTelemetry's old and new semantic-convention names, then the short name a
# hand-written tag tends to use. The first one present wins.
_HTTP_STATUS_TAGS = ("http.status_code", "http.response.status_code", "http.status")
# Log levels at or above "error", as the span API, stdlib logging and structlog name them.
_ERROR_LEVELS = frozenset(("error", "critical", "fatal"))


@dataclass(frozen=True, slots=True)
class ErrorHop:
    """One span on the way from the error's origin to the top of its tree.

    ``status`` is the span's status (``"ok"`` or ``"error"``), ``http_status`` its
    HTTP status code when a tag recorded one: a hop can be ``ok`` and still have
    answered 500, or have failed and been retried.
    """

    span: Span
    status: str
    http_status: int | None


@dataclass(frozen=True, slots=True)
class ErrorChain:
    """Where an error in a trace started and the hops it took upwards.

    ``origin`` is the span where the error started, ``message`` what it said, and
    ``path`` the hops from ``origin`` (first) up to the root, or to the top of the
    orphan subtree the origin sits in (last).
    """

    origin: Span
    message: str
    path: tuple[ErrorHop, ...]

    @property
    def sentence(self) -> str:
        """The finding as one line for a person.

        For example: "payment failed first: CardDeclined: card declined (in POST
        /charge), surfacing as HTTP 500 at api-gateway".
        """
        text = f"{self.origin.service} failed first: {self.message}"
        if self.origin.operation:
            text += f" (in {self.origin.operation})"
        if len(self.path) < 2:
            return text
        top = self.path[-1]
        service = top.span.service
        if top.http_status is not None:
            if top.status == "error" or top.http_status >= 400:
                return f"{text}, surfacing as HTTP {top.http_status} at {service}"
            return f"{text}, but {service} still answered HTTP {top.http_status}"
        if top.status == "error":
            return f"{text}, surfacing as an error at {service}"
        return f"{text}, but {service} finished ok"


def error_chain(trace: Trace) -> ErrorChain | None:
    """Where the errors in ``trace`` started, or None when no span has status error.

    The origin is the deepest error span none of whose children failed: an error
    whose child also failed is more likely reporting than causing. Among equally
    deep ones the earliest-starting wins. Depth counts from the root, or from the top
    of an orphan subtree for spans whose ancestry is broken. The message is the
    origin's first error-level log line, else its ``error.type`` tag, else "error".
    Pure, never raises.
    """
    depths = {span.span_id: depth for span, depth in trace.depth_first()}
    candidates = [
        span
        for span in trace.spans
        if span.status == "error"
        and not any(child.status == "error" for child in trace.children_of(span))
    ]
    if not candidates:
        # A cycle of failing spans in corrupt data has no leaf; fall back to any error.
        candidates = [span for span in trace.spans if span.status == "error"]
    if not candidates:
        return None
    origin = min(
        candidates,
        key=lambda span: (-depths.get(span.span_id, 0), span.start_time, span.span_id),
    )
    return ErrorChain(origin=origin, message=_message(origin), path=_path(trace, origin))


def _message(span: Span) -> str:
    for log in span.logs:
        if log.level.lower() in _ERROR_LEVELS and log.message:
            return log.message
    return span.tags.get("error.type") or "error"


def _path(trace: Trace, origin: Span) -> tuple[ErrorHop, ...]:
    hops: list[ErrorHop] = []
    seen: set[str] = set()
    span: Span | None = origin
    # Follow the tree's parent links (Trace cuts cycles); ``seen`` bounds the walk anyway.
    while span is not None and span.span_id not in seen:
        seen.add(span.span_id)
        hops.append(ErrorHop(span=span, status=span.status, http_status=_http_status(span)))
        span = trace.parent_of(span)
    return tuple(hops)


def _http_status(span: Span) -> int | None:
    for tag in _HTTP_STATUS_TAGS:
        value = span.tags.get(tag)
        if value is not None:
            try:
                return int(value)
            except ValueError:
                return None
    return None

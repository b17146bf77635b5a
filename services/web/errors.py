"""The dashboard's errors: one root, subclassed by cause. Each message says what to do."""

from __future__ import annotations


class WebError(Exception):
    """Root of every error of ``services.web``."""


class BadView(WebError):
    """A URL that names no view: an unknown unit, a bad year, period, metric or format (HTTP 400/404)."""

    def __init__(self, message: str, *, field: str, status: int = 400) -> None:
        super().__init__(message)
        self.field = field
        self.status = status


class NotServed(WebError):
    """The query service did not answer (HTTP 503): the stack is down or busy."""

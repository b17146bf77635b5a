"""The report's errors: one root, subclassed by cause. Each message says what to do."""

from __future__ import annotations


class ReportError(Exception):
    """Root of every error of ``services.report``."""


class UnknownUnit(ReportError):
    """The unit named is not an official unit of its scheme."""


class UnsupportedUnit(ReportError):
    """A unit the query cannot answer for yet (pre-2025 districts and communes)."""


class BadSpan(ReportError):
    """Years or a period that cannot make a report."""


class MovingLog(ReportError):
    """The figures kept moving while they were gathered: no consistent sequence to stand at."""


class UnknownFormat(ReportError):
    """A report format that has no writer."""

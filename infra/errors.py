"""The root of infra's errors: every exception infra raises on its own account subclasses ``InfraError``."""

from __future__ import annotations


class InfraError(Exception):
    """The root of infra's errors."""

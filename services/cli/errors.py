"""The command line's errors: one root, subclassed by cause."""

from __future__ import annotations


class CliError(Exception):
    """Root of the command line's own errors (the other packages' errors keep their own roots)."""

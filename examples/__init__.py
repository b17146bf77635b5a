"""Small documented examples of services built on ANTQ Ledger (not part of the installed packages)."""

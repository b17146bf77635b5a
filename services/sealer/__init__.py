"""Tamper evidence: seal ranges of the event log into a signed SHA-256 chain, and verify it."""

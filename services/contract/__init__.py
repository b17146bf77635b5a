"""The published contract of the ledger: JSON Schemas of everything on the wire and an AsyncAPI 3 document of
the subjects, generated from the code (``antq contract export``) and committed under ``docs/contract/``."""

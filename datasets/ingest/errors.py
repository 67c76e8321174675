"""Errors raised by the Django-free ingest code."""


class IngestError(Exception):
    """The file cannot be imported at all; the message says why and what to do."""

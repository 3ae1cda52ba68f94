"""Errors of the ingestion framework."""


class SourceFileError(ValueError):
    """A source file that cannot be read as its documented format; the message names it."""

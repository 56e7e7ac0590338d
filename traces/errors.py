"""The error every trace problem raises: a message naming the file, row and column."""
from __future__ import annotations


class TraceError(ValueError):
    """A trace or length specification that cannot be used as written."""

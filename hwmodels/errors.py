"""The one error type of hwmodels: a catalog entry, config file or name that cannot be used.

It subclasses ValueError so callers that validate input can catch it with their own user-error
handling; the message always names the entry or file and the field at fault.
"""
from __future__ import annotations


class CatalogError(ValueError):
    """An unknown catalog name, a malformed catalog entry, or an unusable config.json."""

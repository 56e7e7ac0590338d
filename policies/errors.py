"""Errors of the policy layer, importable by every policy module without cycles."""
from __future__ import annotations


class PolicyError(ValueError):
    """An unknown policy name, bad parameters, or a broken plug-in."""

"""Errors a user can cause (bad config, bad trace, unknown names) versus engine invariant breaks.

The CLI turns every `UserInputError` into a one-paragraph message and exit code 2; an
`EngineInvariantError` is a bug in servesim or in a plug-in and names where it happened.
"""
from __future__ import annotations


class UserInputError(ValueError):
    """Bad input from the user: the message names the file, key or row and the fix."""


class ConfigError(UserInputError):
    """An experiment config that cannot be run as written."""


class EngineInvariantError(RuntimeError):
    """An invariant of the simulation broke; the message names the request, replica and time."""

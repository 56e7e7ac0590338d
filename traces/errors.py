"""The error every trace problem raises, and how its message names the place of the problem.

Messages are for users: one paragraph saying where (file, row, column), what is wrong (with
the bad value) and how to fix it. A row is named by its line number in the file when the table
came from a file, else by its index label in the DataFrame.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd


class TraceError(ValueError):
    """A trace, length table or workload specification that cannot be used as written."""


@dataclass(frozen=True)
class Locator:
    """Names rows and columns of a table the way the user sees them in their file.

    `lines[i]` is the file line of table row i (None for in-memory tables); `names` maps a
    canonical column to the name it has in the file (e.g. prompt_tokens -> ContextTokens);
    `noun` is "column" for tables and "field" for JSON records; `text` says the values were
    read from text (CSV), so bad values are quoted as the user typed them.
    """

    origin: str
    lines: np.ndarray | None = None
    index: pd.Index | None = None
    names: Mapping[str, str] = field(default_factory=dict)
    noun: str = "column"
    text: bool = False

    def row(self, position: int) -> str:
        if self.lines is not None:
            return f"row {int(self.lines[position])}"
        label = self.index[position] if self.index is not None else position
        return f"row at index {label}"

    def column(self, name: str) -> str:
        return f"{self.noun} {self.names.get(name, name)}"

    def error(self, position: int, column: str, problem: str, fix: str) -> TraceError:
        """`problem` should end with the bad value (`..., got 'abc'`); `fix` is a full sentence."""
        return TraceError(f"{self.origin}: {self.row(position)}, {self.column(column)}: {problem}. {fix}")

    def file_error(self, problem: str, fix: str) -> TraceError:
        return TraceError(f"{self.origin}: {problem}. {fix}")

    def reorder(self, order: np.ndarray) -> Locator:
        """The same locator for the rows taken in `order` (after a loader sorts them)."""
        lines = self.lines[order] if self.lines is not None else None
        index = self.index[order] if self.index is not None else None
        return replace(self, lines=lines, index=index)

    def shown(self, value: Any) -> str:
        """A bad value as the user wrote it; missing values are named as such."""
        if isinstance(value, np.generic):
            value = value.item()
        if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
            return "nothing (the value is missing)"
        if isinstance(value, str) and not value.strip():
            return "an empty value"
        return repr(str(value)) if self.text else repr(value)

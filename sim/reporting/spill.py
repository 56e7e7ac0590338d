"""Tables that grow with the run, kept on disk: rows buffered briefly, written as Parquet row groups.

A run's per-request rows and time series grow with the trace and the simulated time; holding
them as Python tuples until the end made memory grow with both. Here at most one row group
of rows is in memory; the file is the table (read back only when someone asks for it).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

ROWS_PER_GROUP = 16_384


class ParquetSpill:
    """Rows appended one at a time (tuples of `columns`), written `rows_per_group` at a time.

    `frame` turns a list of rows into the DataFrame of one row group (it may add derived
    columns); every group is cast to the schema of `frame([])` so chunks never disagree.
    A table whose rows come in blocks appends them as arrays instead (`append_columns`): a
    spill takes either tuples or blocks, never both.
    """

    def __init__(self, path: Path, frame: Callable[[list[tuple]], pd.DataFrame],
                 rows_per_group: int | None = None) -> None:
        self.path = path
        self._frame = frame
        self._rows: list[tuple] = []
        self._blocks: list[Sequence[np.ndarray]] = []
        self._num_block_rows = 0
        self._rows_per_group = rows_per_group or ROWS_PER_GROUP
        self._schema = pa.Schema.from_pandas(frame([]), preserve_index=False)
        self._writer: pq.ParquetWriter | None = None
        self.num_rows = 0

    def append(self, row: tuple) -> None:
        self._rows.append(row)
        self.num_rows += 1
        if len(self._rows) >= self._rows_per_group:
            self._flush()

    def append_columns(self, columns: Sequence[np.ndarray]) -> None:
        """A block of rows as one array per column of `frame([])`, in order (no derived columns):
        cheaper than a tuple a row when rows come by the thousand."""
        self._blocks.append(columns)
        count = len(columns[0])
        self._num_block_rows += count
        self.num_rows += count
        if self._num_block_rows >= self._rows_per_group:
            self._flush()

    @property
    def num_buffered(self) -> int:
        """Rows in memory, waiting to be written with the next row group."""
        return len(self._rows) + self._num_block_rows

    def close(self) -> Path:
        """Write what is buffered; the file then holds every row (an empty table if none came)."""
        self._flush()
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, self._schema)
        self._writer.close()
        return self.path

    def _flush(self) -> None:
        if not (self._rows or self._blocks):
            return
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, self._schema)
        if self._blocks:
            columns = [np.concatenate(parts) for parts in zip(*self._blocks, strict=True)]
            table = pa.Table.from_arrays(columns, schema=self._schema)
        else:
            table = pa.Table.from_pandas(self._frame(self._rows), schema=self._schema, preserve_index=False)
        self._writer.write_table(table)
        self._rows, self._blocks, self._num_block_rows = [], [], 0


_NUMPY_DTYPES = frozenset({"float64", "int64", "bool"})


def typed_frame(columns: tuple[str, ...], dtypes: Mapping[str, str]) -> Callable[[list[tuple]], pd.DataFrame]:
    """A `frame` for ParquetSpill: the rows as a DataFrame with fixed column types.

    Built a column at a time: NumPy converts a column of numbers at once, many times faster than
    pandas infers the types of rows of mixed values (the table is the same)."""

    def frame(rows: list[tuple]) -> pd.DataFrame:
        values = zip(*rows, strict=True) if rows else (() for _ in columns)
        return pd.DataFrame({name: _typed_column(column, dtypes[name])
                             for name, column in zip(columns, values, strict=True)})

    return frame


def _typed_column(values: tuple, dtype: str) -> np.ndarray | pd.Series:
    if dtype in _NUMPY_DTYPES:
        return np.array(values, dtype=dtype)
    return pd.Series(values, dtype=object).astype(pd.api.types.pandas_dtype(dtype))


def write_typed_tables(directory: Path, tables: Iterable[tuple[str, tuple[str, ...], list[tuple]]],
                       dtypes: Mapping[str, str]) -> dict[str, Path]:
    """Each (name, columns, rows) as `<name>.parquet` in `directory`, typed by `dtypes`; their paths by name."""
    paths = {}
    for name, columns, rows in tables:
        path = directory / f"{name}.parquet"
        typed_frame(columns, dtypes)(rows).to_parquet(path, index=False)
        paths[name] = path
    return paths


def read_table(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path)

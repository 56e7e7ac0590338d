"""Iteration records (output.iterations), kept on disk as the run goes and merged into one sorted table.

The table is in (start_s, replica) order, but iterations are recorded out of that order: each
replica as its iterations end, a fast-forwarded stretch all at once. So rows are buffered,
sorted and written as a run file once RUN_ROWS are waiting; at the end the runs are merged,
a block of each at a time, into `iterations.parquet`. Ties keep the order of recording,
single iterations before stretches' ones (as the stable sort of the whole table did), so the
file is the table the whole sort gave, row for row.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from servesim.sim.reporting.spill import ROWS_PER_GROUP

ITERATION_COLUMNS = ("replica", "start_s", "end_s", "batch_size", "num_tokens", "num_prefill_tokens", "num_decodes")
ITERATION_DTYPES = {name: "float64" if name.endswith("_s") else "int64" for name in ITERATION_COLUMNS}
RUN_ROWS = 1 << 17
"""Rows buffered before they are sorted and written as a run (about 9 MB of columns)."""
RUN_GROUP_ROWS = 8192
"""Rows per row group of a run file: merging holds about one group of each run (0.6 MB)."""
_ORDER = ("start_s", "replica", "stretch", "seq")
"""The sort key: `stretch` 0 for a single iteration, 1 for a stretch's; `seq` the place in its kind's recording."""


class IterationRecorder:
    """Takes iteration rows (and stretches' arrays of them) and writes them to `path`, sorted, at `close`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._rows: list[tuple] = []
        self._stretches: list[pd.DataFrame] = []
        self._num_buffered = 0
        self._num_singles = 0
        self._num_stretch_rows = 0
        self._runs: list[Path] = []
        self._closed = False

    def add(self, row: tuple) -> None:
        """A row of ITERATION_COLUMNS."""
        self._rows.append(row)
        self._num_buffered += 1
        if self._num_buffered >= RUN_ROWS:
            self._write_run()

    def add_stretch(self, replica: int, starts: np.ndarray, ends: np.ndarray, batch_size: int) -> None:
        """A fast-forwarded stretch's decode-only iterations, `batch_size` requests each."""
        n = len(starts)
        self._stretches.append(pd.DataFrame({
            "replica": np.full(n, replica, dtype=np.int64),
            "start_s": starts,
            "end_s": ends,
            "batch_size": np.full(n, batch_size, dtype=np.int64),
            "num_tokens": np.full(n, batch_size, dtype=np.int64),
            "num_prefill_tokens": np.zeros(n, dtype=np.int64),
            "num_decodes": np.full(n, batch_size, dtype=np.int64),
            "stretch": np.ones(n, dtype=np.int64),
            "seq": np.arange(self._num_stretch_rows, self._num_stretch_rows + n, dtype=np.int64),
        }))
        self._num_stretch_rows += n
        self._num_buffered += n
        if self._num_buffered >= RUN_ROWS:
            self._write_run()

    def close(self) -> Path:
        """Merge the runs into the table at `path` (idempotent); an empty table if nothing was recorded."""
        if not self._closed:
            self._write_run()
            _merge(self._runs, self.path)
            for run in self._runs:
                run.unlink()
            self._closed = True
        return self.path

    def _write_run(self) -> None:
        singles = pd.DataFrame(self._rows, columns=list(ITERATION_COLUMNS)).astype(ITERATION_DTYPES)
        singles["stretch"] = np.zeros(len(singles), dtype=np.int64)
        singles["seq"] = np.arange(self._num_singles, self._num_singles + len(singles), dtype=np.int64)
        self._num_singles += len(singles)
        frames = [frame for frame in (singles, *self._stretches) if len(frame)]
        self._rows, self._stretches, self._num_buffered = [], [], 0
        if not frames:
            return
        run = _sorted(pd.concat(frames, ignore_index=True))
        path = self.path.with_name(f"{self.path.stem}.run{len(self._runs)}.parquet")
        run.to_parquet(path, index=False, row_group_size=RUN_GROUP_ROWS)  # a reader decodes a group at a time
        self._runs.append(path)


def _merge(runs: list[Path], path: Path) -> None:
    """Merge sorted run files into one table of ITERATION_COLUMNS, in row groups, reading a group of each at a time.

    The rows up to the smallest of the runs' last rows read so far are final (every row still
    unread is later); they are written, and the run that row came from is read further.
    """
    schema = pa.Schema.from_pandas(_empty(), preserve_index=False)
    readers: list[Iterator[pa.Table] | None] = [_row_groups(run) for run in runs]
    last_read: list[tuple | None] = [None] * len(runs)
    held = _empty_with_key()
    with pq.ParquetWriter(path, schema) as writer:
        to_read = list(range(len(runs)))
        while True:
            blocks = [held]
            for index in to_read:
                reader = readers[index]
                group = next(reader, None) if reader is not None else None
                if group is None:
                    readers[index], last_read[index] = None, None
                    continue
                block = group.to_pandas()
                blocks.append(block)
                last_read[index] = tuple(block[list(_ORDER)].iloc[-1])
            pool = _sorted(pd.concat(blocks, ignore_index=True))
            open_runs = [i for i, key in enumerate(last_read) if key is not None]
            if not open_runs:
                _write(writer, pool, schema)
                return
            bound_run = min(open_runs, key=lambda i: last_read[i])  # type: ignore[arg-type, return-value]
            final = _at_most(pool, last_read[bound_run])  # type: ignore[arg-type]
            _write(writer, pool.iloc[:final], schema)
            held = pool.iloc[final:]
            to_read = [bound_run]


def _row_groups(path: Path) -> Iterator[pa.Table]:
    """A file's row groups, each read only when asked for (so merging holds one group of each run)."""
    file = pq.ParquetFile(path)
    for group in range(file.num_row_groups):
        yield file.read_row_group(group)


def _sorted(rows: pd.DataFrame) -> pd.DataFrame:
    """`rows` in _ORDER. NumPy's stable sorts find sorted runs, so merging blocks that are sorted is linear."""
    order = np.lexsort([rows[name].to_numpy() for name in reversed(_ORDER)])
    return rows.take(order).reset_index(drop=True)


def _at_most(pool: pd.DataFrame, key: tuple) -> int:
    """How many rows of `pool` (sorted by _ORDER) come at or before `key`."""
    before = np.zeros(len(pool), dtype=bool)
    equal = np.ones(len(pool), dtype=bool)
    for name, value in zip(_ORDER, key, strict=True):
        column = pool[name].to_numpy()
        before |= equal & (column < value)
        equal &= column == value
    return int(np.count_nonzero(before | equal))


def _write(writer: pq.ParquetWriter, rows: pd.DataFrame, schema: pa.Schema) -> None:
    for first in range(0, len(rows), ROWS_PER_GROUP):
        group = rows.iloc[first:first + ROWS_PER_GROUP][list(ITERATION_COLUMNS)].reset_index(drop=True)
        writer.write_table(pa.Table.from_pandas(group, schema=schema, preserve_index=False))


def _empty() -> pd.DataFrame:
    return pd.DataFrame(columns=list(ITERATION_COLUMNS)).astype(ITERATION_DTYPES)


def _empty_with_key() -> pd.DataFrame:
    return _empty().assign(stretch=np.empty(0, dtype=np.int64), seq=np.empty(0, dtype=np.int64))

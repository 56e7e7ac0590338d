"""Worker processes' tables merged into the run's, a row group of each at a time.

Each worker writes its tables sorted by a key (request id; time) as the whole run does; here
they are merged into one file sorted by that key and then by tie columns (the replica), rows
that still tie keeping their worker's order. Memory holds about one row group of each worker:
the merge is as bounded as the run that wrote the tables (README, "Bounded memory").
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from servesim.sim.reporting import spill

_SOURCE = "__source"
_POSITION = "__position"
Prepare = Callable[[pa.Table, int], pa.Table]
"""Adds columns to a block read from worker `i` (called on each block, in order)."""


def merge_sorted(paths: Sequence[Path], out: Path, key: str, ties: Sequence[str] = ()) -> Path:
    """The tables at `paths`, each sorted by `key`, as one table at `out` in (key, *ties) order."""
    schema = pq.read_schema(paths[0])
    with pq.ParquetWriter(out, schema) as writer:
        for block in merged_blocks(paths, key, ties):
            writer.write_table(block.select(schema.names).cast(schema), row_group_size=spill.ROWS_PER_GROUP)
    return out


def merged_blocks(paths: Sequence[Path], key: str, ties: Sequence[str] = (), prepare: Prepare | None = None
                  ) -> Iterator[pa.Table]:
    """The rows of every table, sorted by (key, *ties, worker, place in its table), in blocks.

    A block holds the rows below the smallest key last read from a table still open (every row
    unread is at or above it), so it is final; the table that set that bound is read further.
    """
    readers: list[Iterator[pa.Table] | None] = [_blocks(path, i, prepare) for i, path in enumerate(paths)]
    last = [math.inf] * len(paths)  # each table's key in its last row read so far
    held: list[pa.Table] = []
    to_read = list(range(len(paths)))
    while True:
        for index in to_read:
            reader = readers[index]
            block = next(reader, None) if reader is not None else None
            if block is None:
                readers[index] = None
                continue
            held.append(block)
            last[index] = float(block.column(key)[-1].as_py())
        open_tables = [i for i, reader in enumerate(readers) if reader is not None]
        if not held:
            if not open_tables:
                return
            to_read = open_tables
            continue
        pool = _sorted(pa.concat_tables(held), key, ties)
        if not open_tables:
            if pool.num_rows:
                yield pool
            return
        bound_table = min(open_tables, key=lambda i: last[i])
        final = int(np.searchsorted(pool.column(key).to_numpy(), last[bound_table], side="left"))
        if final:
            yield pool.slice(0, final)
        held = [pool.slice(final)]
        to_read = [bound_table]


def _blocks(path: Path, source: int, prepare: Prepare | None) -> Iterator[pa.Table]:
    """A table's rows a block at a time, each marked with its worker and its place in the table."""
    position = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=spill.ROWS_PER_GROUP):
        block = pa.Table.from_batches([batch])
        rows = block.num_rows
        block = block.append_column(_SOURCE, pa.array(np.full(rows, source, dtype=np.int64)))
        block = block.append_column(_POSITION, pa.array(np.arange(position, position + rows, dtype=np.int64)))
        position += rows
        yield block if prepare is None else prepare(block, source)


def _sorted(table: pa.Table, key: str, ties: Sequence[str]) -> pa.Table:
    columns = [key, *ties, _SOURCE, _POSITION]
    order = np.lexsort([table.column(name).to_numpy() for name in reversed(columns)])
    return table.take(pa.array(order))


def merge_system_series(paths: Sequence[Path], out: Path) -> Path:
    """The requests in the system over time, from each worker's count of its own requests.

    Each worker's series steps its own count; the run's is their sum. One row per time at which
    it changes, with the count after every change at that time (a single process may write
    several rows at one time, one per event; the last of them is this row).
    """
    counts = [0] * len(paths)

    def with_change(block: pa.Table, source: int) -> pa.Table:
        values = block.column("num_in_system").to_numpy()
        change = np.diff(values, prepend=counts[source])
        counts[source] = int(values[-1]) if len(values) else counts[source]
        return block.append_column("__change", pa.array(change.astype(np.int64)))

    total = 0
    pending: pa.Table | None = None
    schema = pq.read_schema(paths[0])
    with pq.ParquetWriter(out, schema) as writer:
        for block in merged_blocks(paths, "time_s", (), with_change):
            running = total + np.cumsum(block.column("__change").to_numpy())
            total = int(running[-1])
            block = block.set_column(block.schema.get_field_index("num_in_system"), "num_in_system",
                                     pa.array(running.astype(np.int64)))
            block = block.select(schema.names).cast(schema)
            if pending is not None:
                block = pa.concat_tables([pending, block])
            times = block.column("time_s").to_numpy()
            last_of_time = np.append(times[1:] != times[:-1], False)
            keep = np.flatnonzero(last_of_time)
            writer.write_table(block.take(pa.array(keep, type=pa.int64())))
            pending = block.slice(len(times) - 1)
        if pending is not None:
            writer.write_table(pending)
    return out

"""Trace files read chunk by chunk, so that a run holds a bounded number of rows at a time.

`scan_trace` reads a file once to validate every row and to learn what must be known before
the first row is used (where its arrivals start and end); the `TraceChunks` it returns then
read the file again, a chunk at a time, as often as asked. A chunk's rows are exactly the rows
`load_trace` gives for the same lines: the same parsers and options, the same validation and
the same element-wise arrival conversion. A file that fails the chunked pass is handed to
`load_trace`'s loader, whose whole-file reading names the bad row by its file line.

The canonical formats (csv, jsonl, parquet) are read in chunks; the others are loaded whole.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pandas as pd
import pyarrow as pa

from servesim.traces.arrival_origin import ArrivalOrigin, arrival_origin
from servesim.traces.canonical import (
    CSV_TEXT_COLUMNS,
    canonical_csv_rows,
    canonical_jsonl_rows,
    canonical_parquet_rows,
    load_canonical_csv,
    load_canonical_jsonl,
    load_canonical_parquet,
    parquet_file,
)
from servesim.traces.errors import Locator, TraceError
from servesim.traces.readers import EXACT_FLOATS, jsonl_records

CHUNK_ROWS = 65_536
"""Trace rows read at a time: a few megabytes of canonical columns."""

STREAMED_FORMATS = ("csv", "jsonl", "parquet")


@dataclass(frozen=True)
class TraceChunks:
    """A validated canonical trace file: iterating reads its canonical rows again, chunk by chunk."""

    path: Path
    format: str
    origin: ArrivalOrigin
    chunk_rows: int

    def __iter__(self) -> Iterator[pd.DataFrame]:
        for table in raw_chunks(self.path, self.format, self.chunk_rows):
            table["arrival_s"] = self.origin.apply(table["arrival_s"].to_numpy())
            yield table


def scan_trace(path: Path, format: str, chunk_rows: int | None = None, **options: object) -> TraceChunks | None:
    """The file's chunks after one validating pass, or None if `format` is not read in chunks.

    `chunk_rows` defaults to CHUNK_ROWS. Raises the TraceError `load_trace` would raise for the file.
    """
    chunk_rows = chunk_rows or CHUNK_ROWS
    if format not in STREAMED_FORMATS or set(options) - {"arrival_unit"}:
        return None
    unit = options.get("arrival_unit")
    assert unit is None or isinstance(unit, str)
    try:
        first = last = None
        for table in raw_chunks(path, format, chunk_rows):
            arrivals = table["arrival_s"].to_numpy()
            first = float(arrivals[0]) if first is None else first
            last = float(arrivals[-1])
        if first is None or last is None:
            raise TraceError(f"{path}: the trace has no requests")
    except (ValueError, OSError) as exc:
        whole_file = {"csv": load_canonical_csv, "jsonl": load_canonical_jsonl, "parquet": load_canonical_parquet}
        whole_file[format](path, unit)  # names the bad row by its file line
        raise TraceError(f"{path}: {exc}") from None
    return TraceChunks(path, format, arrival_origin(first, last, str(path), unit), chunk_rows)


def raw_chunks(path: Path, format: str, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """Validated canonical rows as written (arrivals not converted), in chunks.

    Rows are named by their place in the chunk, not the file; every chunk has the columns of
    the first, and arrivals must not go backwards across chunks either.
    """
    columns: list[str] | None = None
    previous_s: float | None = None
    read = {"csv": csv_chunks, "jsonl": jsonl_chunks, "parquet": parquet_chunks}[format]
    for table in read(path, chunk_rows):
        if columns is not None and list(table.columns) != columns:
            raise TraceError(f"{path}: a chunk has the columns {list(table.columns)}, the first {columns}")
        columns = list(table.columns)
        first_s = float(table["arrival_s"].iloc[0])
        if previous_s is not None and first_s < previous_s:
            raise TraceError(f"{path}: arrival {first_s!r} s is earlier than the row before")
        previous_s = float(table["arrival_s"].iloc[-1])
        yield table


def csv_chunks(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """A canonical CSV's chunks, parsed with `read_csv_table`'s options and validated."""
    with pd.read_csv(path, chunksize=chunk_rows, dtype=dict.fromkeys(CSV_TEXT_COLUMNS, str),
                     keep_default_na=False, encoding="utf-8-sig", **EXACT_FLOATS) as reader:
        for raw in reader:
            yield canonical_csv_rows(raw, path, Locator(str(path), None, raw.index, text=True))


def jsonl_chunks(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """A canonical JSON Lines file's chunks of `chunk_rows` non-blank lines, parsed and validated."""
    with path.open("rb") as file:
        for data in _line_blocks(file, chunk_rows):
            yield canonical_jsonl_rows(jsonl_records(path, data), path)


def parquet_chunks(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """A canonical Parquet file's batches of at most `chunk_rows` rows, validated (rows counted in the file)."""
    first_row = 0
    for batch in parquet_file(path).iter_batches(batch_size=chunk_rows):
        yield canonical_parquet_rows(pa.Table.from_batches([batch]), path, first_row)
        first_row += batch.num_rows



def _line_blocks(file: BinaryIO, chunk_rows: int) -> Iterator[bytes]:
    lines: list[bytes] = []
    rows = 0
    for line in file:
        lines.append(line)
        rows += not line.isspace()
        if rows == chunk_rows:
            yield b"".join(lines)
            lines, rows = [], 0
    if rows:
        yield b"".join(lines)

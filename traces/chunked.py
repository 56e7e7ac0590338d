"""Trace files read chunk by chunk, so that a run holds a bounded number of rows at a time.

`scan_trace` reads a file once to validate every row and to learn what must be known before
the first row is used (where its arrivals start and end; for RAGPulse, the time order); the
`TraceChunks` it returns then read the file again, a chunk at a time, as often as asked. A
chunk's rows are exactly the rows `load_trace` gives for the same lines: the same parsers and
options, the same validation and the same element-wise arrival conversion. A file that fails
the chunked pass is handed to `load_trace`'s loader, whose whole-file reading names the bad row
by its file line.

Every format is read in chunks: the canonical ones (csv, jsonl, parquet) and the published ones
(azure, mooncake, ragpulse).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pandas as pd
import pyarrow as pa

from servesim.traces.arrival_origin import arrival_origin
from servesim.traces.azure import azure_chunks
from servesim.traces.canonical import (
    CSV_TEXT_COLUMNS,
    canonical_csv_rows,
    canonical_jsonl_rows,
    canonical_parquet_rows,
    parquet_file,
)
from servesim.traces.errors import TraceError
from servesim.traces.loaders import FORMATS
from servesim.traces.mooncake import mooncake_chunks
from servesim.traces.ragpulse import RagpulseChunks
from servesim.traces.readers import csv_table_chunks, jsonl_blocks, jsonl_records
from servesim.traces.schema import in_arrival_order, same_columns

CHUNK_ROWS = 65_536
"""Trace rows read at a time: a few megabytes of canonical columns."""

CANONICAL_FORMATS = ("csv", "jsonl", "parquet")


@dataclass(frozen=True)
class TraceChunks:
    """A validated trace file: iterating reads its canonical rows again, chunk by chunk."""

    path: Path
    format: str
    read: Callable[[], Iterable[pd.DataFrame]]

    def __iter__(self) -> Iterator[pd.DataFrame]:
        return iter(self.read())


def scan_trace(path: Path, format: str, chunk_rows: int | None = None, **options: object) -> TraceChunks | None:
    """The file's chunks after one validating pass, or None for options its format does not know
    (`load_trace` then says so).

    `chunk_rows` defaults to CHUNK_ROWS. Raises the TraceError `load_trace` would raise for the file.
    """
    chunk_rows = chunk_rows or CHUNK_ROWS
    spec = FORMATS.get(format)
    if spec is None or set(options) - set(spec.options):
        return None
    try:
        read = _scan(path, format, chunk_rows, options)
    except (ValueError, OSError) as exc:
        spec.load(path, **options)  # names the bad row by its file line
        raise TraceError(f"{path}: {exc}") from None
    return TraceChunks(path, format, read)


def _scan(path: Path, format: str, chunk_rows: int, options: dict[str, object]
          ) -> Callable[[], Iterable[pd.DataFrame]]:
    """One validating pass over the file; returns what reads its canonical rows again."""
    if format == "ragpulse":
        return RagpulseChunks.scan(path, chunk_rows, **options).__iter__  # type: ignore[arg-type]
    first = last = None
    for table in raw_chunks(path, format, chunk_rows, options):
        arrivals = table["arrival_s"].to_numpy()
        first = float(arrivals[0]) if first is None else first
        last = float(arrivals[-1])
    if first is None or last is None:
        raise TraceError(f"{path}: the trace has no requests")
    if format not in CANONICAL_FORMATS:
        return partial(raw_chunks, path, format, chunk_rows, options)
    unit = options.get("arrival_unit")
    assert unit is None or isinstance(unit, str)
    origin = arrival_origin(first, last, str(path), unit)

    def converted() -> Iterator[pd.DataFrame]:
        for table in raw_chunks(path, format, chunk_rows, {}):
            table["arrival_s"] = origin.apply(table["arrival_s"].to_numpy())
            yield table

    return converted


def raw_chunks(path: Path, format: str, chunk_rows: int, options: dict[str, object]) -> Iterator[pd.DataFrame]:
    """Validated canonical rows of a sorted format, in chunks (a canonical file's arrivals as written).

    Rows are named by their place in the chunk, not the file; every chunk has the columns of
    the first, and arrivals must not go backwards across chunks either.
    """
    if format == "mooncake":
        tables = mooncake_chunks(path, chunk_rows, **options)  # type: ignore[arg-type]
    else:
        read = {"csv": csv_chunks, "jsonl": jsonl_chunks, "parquet": parquet_chunks, "azure": azure_chunks}[format]
        tables = read(path, chunk_rows)
    return in_arrival_order(same_columns(tables, str(path)), str(path))


def csv_chunks(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """A canonical CSV's chunks, parsed with `read_csv_table`'s options and validated."""
    for raw, where in csv_table_chunks(path, chunk_rows, CSV_TEXT_COLUMNS):
        yield canonical_csv_rows(raw, path, where)


def jsonl_chunks(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """A canonical JSON Lines file's chunks of `chunk_rows` non-blank lines, parsed and validated."""
    with path.open("rb") as file:
        for _, data in jsonl_blocks(file, chunk_rows):
            yield canonical_jsonl_rows(jsonl_records(path, data), path)


def parquet_chunks(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """A canonical Parquet file's batches of at most `chunk_rows` rows, validated (rows counted in the file)."""
    first_row = 0
    for batch in parquet_file(path).iter_batches(batch_size=chunk_rows):
        yield canonical_parquet_rows(pa.Table.from_batches([batch]), path, first_row)
        first_row += batch.num_rows

"""Mooncake FAST'25 traces (kvcache-ai/Mooncake): JSON Lines with prefix-block hash ids."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from servesim.traces.errors import TraceError
from servesim.traces.readers import JsonRecords, jsonl_blocks, jsonl_records, read_jsonl, request_timestamps
from servesim.traces.schema import validate_trace

MOONCAKE_NAMES = {
    "arrival_s": "timestamp",
    "prompt_tokens": "input_length",
    "output_tokens": "output_length",
    "prefix_hashes": "hash_ids",
}
MOONCAKE_BLOCK_TOKENS = 512


def load_mooncake(path: Path, block_tokens: int = MOONCAKE_BLOCK_TOKENS) -> pd.DataFrame:
    """`timestamp` (ms from the trace start), `input_length`, `output_length`, `hash_ids`.

    Each hash id stands for one `block_tokens`-token block of the prompt's prefix (512 in
    the published traces); equal ids at the same leading positions are a reusable prefix.
    """
    _check_block_tokens(path, block_tokens)
    records = read_jsonl(path)
    stamps_ms = _stamps_ms(records)
    return _canonical(records, stamps_ms, float(stamps_ms.min()), block_tokens)


def mooncake_chunks(path: Path, chunk_rows: int, block_tokens: int = MOONCAKE_BLOCK_TOKENS
                    ) -> Iterator[pd.DataFrame]:
    """`load_mooncake`'s rows, runs of `chunk_rows` non-blank lines at a time, validated.

    Arrivals count from the first chunk's earliest request: in a sorted file (any other is an
    error) that is the file's earliest, so every row gets the seconds `load_mooncake` gives it.
    """
    _check_block_tokens(path, block_tokens)
    start_ms: float | None = None
    with path.open("rb") as file:
        for _, data in jsonl_blocks(file, chunk_rows):
            records = jsonl_records(path, data)
            stamps_ms = _stamps_ms(records)
            start_ms = float(stamps_ms.min()) if start_ms is None else start_ms
            yield _canonical(records, stamps_ms, start_ms, block_tokens)


def _check_block_tokens(path: Path, block_tokens: object) -> None:
    if isinstance(block_tokens, bool) or not isinstance(block_tokens, int) or block_tokens < 1:
        raise TraceError(
            f"{path}: option block_tokens must be a whole number of tokens >= 1, got {block_tokens!r}. "
            f"The published Mooncake traces use {MOONCAKE_BLOCK_TOKENS}."
        )


def _stamps_ms(records: JsonRecords) -> np.ndarray:
    """The `timestamp` field as float milliseconds; records without the published fields are an error."""
    return request_timestamps(records, MOONCAKE_NAMES, "Mooncake trace",
                              "Mooncake timestamps are milliseconds from the start of the trace.")


def _canonical(records: JsonRecords, stamps_ms: np.ndarray, start_ms: float, block_tokens: int) -> pd.DataFrame:
    """The records (the whole file or a run of its lines), arriving `start_ms` on, as validated canonical rows."""
    canonical = pd.DataFrame(
        {
            "arrival_s": (stamps_ms - start_ms) / 1000.0,
            "prompt_tokens": records.column("input_length"),
            "output_tokens": records.column("output_length"),
        }
    )
    if "hash_ids" in records.fields:
        canonical["prefix_hashes"] = records.tuples("hash_ids")
        canonical["prefix_block_tokens"] = block_tokens
    return validate_trace(canonical, str(records.path), source=records.locator(MOONCAKE_NAMES))

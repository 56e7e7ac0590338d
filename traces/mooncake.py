"""Mooncake FAST'25 traces (kvcache-ai/Mooncake): JSON Lines with prefix-block hash ids."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from servesim.traces.errors import TraceError
from servesim.traces.readers import read_jsonl, require_columns
from servesim.traces.schema import numbers, validate_trace

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
    if isinstance(block_tokens, bool) or not isinstance(block_tokens, int) or block_tokens < 1:
        raise TraceError(
            f"{path}: option block_tokens must be a whole number of tokens >= 1, got {block_tokens!r}. "
            f"The published Mooncake traces use {MOONCAKE_BLOCK_TOKENS}."
        )
    records = read_jsonl(path)
    where = records.locator(MOONCAKE_NAMES)
    require_columns(records.fields, ("timestamp", "input_length", "output_length"), where, "Mooncake trace")
    stamps_ms = numbers(
        records.column("timestamp"),
        where,
        "arrival_s",
        integer=False,
        minimum=None,
        fix="Mooncake timestamps are milliseconds from the start of the trace.",
    )
    canonical = pd.DataFrame(
        {
            "arrival_s": (stamps_ms - stamps_ms.min()) / 1000.0,
            "prompt_tokens": records.column("input_length"),
            "output_tokens": records.column("output_length"),
        }
    )
    if "hash_ids" in records.fields:
        canonical["prefix_hashes"] = records.tuples("hash_ids")
        canonical["prefix_block_tokens"] = block_tokens
    return validate_trace(canonical, str(path), source=where)

"""`load_trace`: one entry point for every supported trace format, each giving the canonical table.

Real timestamps are shifted so that the first request arrives at 0; every table is checked
by `validate_trace` before it is returned.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from servesim.traces.azure import load_azure
from servesim.traces.canonical import load_canonical_csv, load_canonical_jsonl, load_canonical_parquet
from servesim.traces.errors import TraceError
from servesim.traces.mooncake import load_mooncake
from servesim.traces.ragpulse import load_ragpulse


@dataclass(frozen=True)
class TraceFormat:
    """A trace format: its loader and the keyword options the loader accepts."""

    name: str
    load: Callable[..., pd.DataFrame]
    options: tuple[str, ...]
    description: str


FORMATS: dict[str, TraceFormat] = {
    f.name: f
    for f in (
        TraceFormat("azure", load_azure, (), "Azure LLM inference trace CSV (TIMESTAMP, ContextTokens, ...)"),
        TraceFormat("mooncake", load_mooncake, ("block_tokens",), "Mooncake FAST'25 JSON Lines with hash_ids"),
        TraceFormat("ragpulse", load_ragpulse, ("components",), "RAGPulse 0_trace.jsonl (sorted on load)"),
        TraceFormat("csv", load_canonical_csv, ("arrival_unit",), "servesim's canonical columns as CSV"),
        TraceFormat("jsonl", load_canonical_jsonl, ("arrival_unit",), "servesim's canonical fields as JSON Lines"),
        TraceFormat("parquet", load_canonical_parquet, ("arrival_unit",), "servesim's canonical columns as Parquet"),
    )
}


def load_trace(path: str | Path, format: str, **options: object) -> pd.DataFrame:
    """Read a trace file in one of FORMATS into the validated canonical table.

    Options go to the format's loader (mooncake: `block_tokens`; ragpulse: `components`; csv
    jsonl and parquet: `arrival_unit`);
    an option the format does not know is an error rather than silently ignored.
    """
    spec = FORMATS.get(format) if isinstance(format, str) else None
    if spec is None:
        raise TraceError(
            f"unknown trace format {format!r}. Use one of the formats: {', '.join(sorted(FORMATS))}."
        )
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        accepted = ", ".join(spec.options) or "none"
        raise TraceError(
            f"{path}: the {format} format has no option(s) {', '.join(unknown)}. Its options: {accepted}."
        )
    return spec.load(Path(path), **options)

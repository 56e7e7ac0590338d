"""Loaders for published trace formats, each returning the canonical table (see schema.py).

Real timestamps are shifted so that the first request arrives at 0. Parsing is vectorised;
only when a check fails is the file inspected row by row, to name the first bad row.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from traces.errors import TraceError
from traces.schema import validate_trace

RAGPULSE_COMPONENTS = ("sys_prompt", "passages_ids", "history", "web_search", "user_input")


def load_trace(path: str | Path, format: str) -> pd.DataFrame:
    """Read a trace file in one of FORMATS into the canonical table."""
    loader = FORMATS.get(format)
    if loader is None:
        raise TraceError(f"unknown trace format {format!r}; formats: {', '.join(sorted(FORMATS))}")
    path = Path(path)
    if not path.is_file():
        raise TraceError(f"{path}: no such trace file")
    return loader(path)


def load_azure(path: Path) -> pd.DataFrame:
    """Azure LLM inference trace 2023/2024 CSV: TIMESTAMP, ContextTokens, GeneratedTokens."""
    table = _read_csv(path)
    _require(table, ("TIMESTAMP", "ContextTokens", "GeneratedTokens"), path)
    stamps = pd.to_datetime(table["TIMESTAMP"], errors="coerce", format="mixed")
    if stamps.isna().any():
        row = int(np.flatnonzero(stamps.isna().to_numpy())[0])
        raise TraceError(f"{path}: row {row + 2}, column TIMESTAMP: not a date and time: {table['TIMESTAMP'].iloc[row]!r}")
    seconds = (stamps - stamps.min()).dt.total_seconds()
    canonical = pd.DataFrame(
        {"arrival_s": seconds, "prompt_tokens": table["ContextTokens"], "output_tokens": table["GeneratedTokens"]}
    )
    return validate_trace(canonical, str(path))


def load_mooncake(path: Path) -> pd.DataFrame:
    """Mooncake FAST'25 JSONL: timestamp (ms), input_length, output_length, hash_ids (512-token blocks)."""
    table = _read_jsonl(path)
    _require(table, ("timestamp", "input_length", "output_length"), path, jsonl=True)
    stamps = _numeric_column(table, "timestamp", path) / 1000.0
    canonical = pd.DataFrame(
        {
            "arrival_s": stamps - stamps.min(),
            "prompt_tokens": table["input_length"],
            "output_tokens": table["output_length"],
        }
    )
    if "hash_ids" in table.columns:
        canonical["prefix_hashes"] = _hash_tuples(table["hash_ids"], path, "hash_ids")
        canonical["prefix_block_tokens"] = 512
    return validate_trace(canonical, str(path), first_line=1)


def load_ragpulse(path: Path) -> pd.DataFrame:
    """RAGPulse 0_trace.jsonl: unsorted, timestamps in seconds as strings, sessions, chunk ids.

    Chunk ids of the prompt's components are concatenated in the order system prompt,
    passages, history, web search, user input (the data does not state the real order).
    Chunks are up to 512 tokens, not fixed-size blocks, so no `prefix_block_tokens` is set.
    """
    table = _read_jsonl(path)
    _require(table, ("timestamp", "input_length", "output_length"), path, jsonl=True)
    stamps = _numeric_column(table, "timestamp", path)
    canonical = pd.DataFrame(
        {"arrival_s": stamps - stamps.min(), "prompt_tokens": table["input_length"], "output_tokens": table["output_length"]}
    )
    if "session_id" in table.columns:
        canonical["session_id"] = table["session_id"].astype(str)
    if "hash_ids" in table.columns:
        canonical["prefix_hashes"] = [
            _ragpulse_ids(value, path, row) for row, value in enumerate(table["hash_ids"].tolist())
        ]
    checked = validate_trace(canonical.sort_values("arrival_s", kind="stable"), str(path), first_line=1)
    return checked


def load_canonical_csv(path: Path) -> pd.DataFrame:
    """A CSV with the canonical columns; prefix_hashes as space-separated integers."""
    table = _read_csv(path)
    if "prefix_hashes" in table.columns:
        table["prefix_hashes"] = [
            _space_separated(value, path, row) for row, value in enumerate(table["prefix_hashes"].tolist())
        ]
    return validate_trace(table, str(path))


def load_canonical_jsonl(path: Path) -> pd.DataFrame:
    """JSON Lines with the canonical fields; prefix_hashes as lists of integers."""
    table = _read_jsonl(path)
    if "prefix_hashes" in table.columns:
        table["prefix_hashes"] = _hash_tuples(table["prefix_hashes"], path, "prefix_hashes")
    return validate_trace(table, str(path), first_line=1)


def load_length_table(path: str | Path) -> pd.DataFrame:
    """A table of request lengths without timestamps (ShareGPT / arXiv files of Vidur and Sarathi).

    Accepts num_prefill_tokens/num_decode_tokens or prompt_tokens/output_tokens columns.
    """
    path = Path(path)
    if not path.is_file():
        raise TraceError(f"{path}: no such length table")
    table = _read_csv(path)
    names = {"num_prefill_tokens": "prompt_tokens", "num_decode_tokens": "output_tokens"}
    table = table.rename(columns=names)
    _require(table, ("prompt_tokens", "output_tokens"), path)
    lengths = table[["prompt_tokens", "output_tokens"]].copy()
    lengths.insert(0, "arrival_s", 0.0)
    return validate_trace(lengths, str(path)).drop(columns="arrival_s")


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise TraceError(f"{path}: not a readable CSV file: {exc}") from None


def _read_jsonl(path: Path) -> pd.DataFrame:
    rows = []
    with path.open() as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TraceError(f"{path}: row {line_number}: not valid JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise TraceError(f"{path}: row {line_number}: expected a JSON object, got {type(record).__name__}")
            rows.append(record)
    if not rows:
        raise TraceError(f"{path}: the trace has no requests")
    return pd.DataFrame(rows)


def _require(table: pd.DataFrame, columns: tuple[str, ...], path: Path, jsonl: bool = False) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        what = "field" if jsonl else "column"
        raise TraceError(f"{path}: missing {what}(s) {', '.join(missing)}; this format needs {', '.join(columns)}")
    if jsonl:
        for column in columns:
            absent = table[column].isna().to_numpy()
            if absent.any():
                raise TraceError(f"{path}: row {int(np.flatnonzero(absent)[0]) + 1}: missing field {column}")


def _numeric_column(table: pd.DataFrame, column: str, path: Path) -> pd.Series:
    values = pd.to_numeric(table[column], errors="coerce")
    if values.isna().any():
        row = int(np.flatnonzero(values.isna().to_numpy())[0])
        raise TraceError(f"{path}: row {row + 1}, field {column}: expected a number, got {table[column].iloc[row]!r}")
    return values.astype(float)


def _hash_tuples(values: pd.Series, path: Path, field: str) -> list[tuple[int, ...]]:
    out = []
    for row, value in enumerate(values.tolist()):
        if not isinstance(value, list) or not all(isinstance(v, int) for v in value):
            raise TraceError(f"{path}: row {row + 1}, field {field}: expected a list of integers, got {value!r}")
        out.append(tuple(value))
    return out


def _ragpulse_ids(value: object, path: Path, row: int) -> tuple[int, ...]:
    if not isinstance(value, dict):
        raise TraceError(f"{path}: row {row + 1}, field hash_ids: expected an object of id lists, got {value!r}")
    ids: list[int] = []
    for component in RAGPULSE_COMPONENTS:
        part = value.get(component, [])
        if not isinstance(part, list) or not all(isinstance(v, int) for v in part):
            raise TraceError(f"{path}: row {row + 1}, field hash_ids.{component}: expected a list of integers")
        ids.extend(part)
    return tuple(ids)


def _space_separated(value: str, path: Path, row: int) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in value.split())
    except ValueError:
        raise TraceError(
            f"{path}: row {row + 2}, column prefix_hashes: expected space-separated integers, got {value!r}"
        ) from None


FORMATS: dict[str, Callable[[Path], pd.DataFrame]] = {
    "azure": load_azure,
    "mooncake": load_mooncake,
    "ragpulse": load_ragpulse,
    "csv": load_canonical_csv,
    "jsonl": load_canonical_jsonl,
}

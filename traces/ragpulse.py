"""RAGPulse (flashserve/RAGPulse) 0_trace.jsonl: a week of RAG requests with sessions and chunk ids."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd

from servesim.traces.errors import Locator, TraceError
from servesim.traces.readers import JsonRecords, jsonl_blocks, jsonl_records, line_spans, read_jsonl, request_timestamps
from servesim.traces.schema import same_columns, validate_trace

RAGPULSE_NAMES = {
    "arrival_s": "timestamp",
    "prompt_tokens": "input_length",
    "output_tokens": "output_length",
    "prefix_hashes": "hash_ids",
}
RAGPULSE_COMPONENTS = ("sys_prompt", "passages_ids", "history", "web_search", "user_input")


def load_ragpulse(path: Path, components: Sequence[str] = RAGPULSE_COMPONENTS) -> pd.DataFrame:
    """The trace sorted by time (the file is not), with `session_id` and `prefix_hashes`.

    `timestamp` is a JSON string holding whole seconds; equal times keep the file's order.
    `prefix_hashes` concatenates the chunk ids of `components` in the given order (by default
    system prompt, passages, history, web search, user input: the data does not state the
    real order). Chunks hold up to 512 tokens but not exactly 512, so `prefix_block_tokens`
    is left out; the per-chunk lengths are in the trace's other files.
    """
    components = _checked_components(path, components)
    records = read_jsonl(path)
    seconds = _seconds(records)
    return _sorted_rows(records, seconds, float(seconds.min()), components)


@dataclass(frozen=True)
class RagpulseChunks:
    """A RAGPulse file validated in one pass, read again in time order, `chunk_rows` lines at a time.

    Sorting the trace needs every row's time, not its row: the pass keeps 24 bytes a row (where
    its line starts and ends in the file, its place in time order), and each chunk
    is then parsed from its lines, read from the file, as `load_ragpulse` parses them all.
    """

    path: Path
    components: tuple[str, ...]
    chunk_rows: int
    start_s: float
    order: np.ndarray = field(repr=False)
    line_starts: np.ndarray = field(repr=False)
    line_ends: np.ndarray = field(repr=False)

    @classmethod
    def scan(cls, path: Path, chunk_rows: int, components: Sequence[str] = RAGPULSE_COMPONENTS) -> RagpulseChunks:
        """Validate every row (each run of lines as the whole file would be) and learn the time order."""
        components = _checked_components(path, components)
        seconds, starts, ends = [], [], []

        def blocks() -> Iterator[pd.DataFrame]:
            with path.open("rb") as file:
                for offset, data in jsonl_blocks(file, chunk_rows):
                    records = jsonl_records(path, data)
                    block_seconds = _seconds(records)
                    _, line_starts, line_ends = line_spans(data)
                    seconds.append(block_seconds)
                    starts.append(offset + line_starts)
                    ends.append(offset + line_ends)
                    yield _sorted_rows(records, block_seconds, float(block_seconds.min()), components)

        for _ in same_columns(blocks(), str(path)):
            pass
        if not seconds:
            raise TraceError(f"{path}: the file is empty. A JSON Lines trace has one JSON object per line.")
        times = np.concatenate(seconds)
        return cls(path, components, chunk_rows, float(times.min()), np.argsort(times, kind="stable"),
                   np.concatenate(starts), np.concatenate(ends))

    def __iter__(self) -> Iterator[pd.DataFrame]:
        with self.path.open("rb") as file:
            for first in range(0, len(self.order), self.chunk_rows):
                rows = self.order[first:first + self.chunk_rows]
                spans = zip(self.line_starts[rows].tolist(), self.line_ends[rows].tolist(), strict=True)
                lines = b"\n".join(_read_at(file, start, end) for start, end in spans)
                records = jsonl_records(self.path, lines)
                yield _sorted_rows(records, _seconds(records), self.start_s, self.components)


def _read_at(file: BinaryIO, start: int, end: int) -> bytes:
    """Bytes `start` to `end` of the file (read, not memory-mapped: mapped pages would count as the run's memory)."""
    file.seek(start)
    return file.read(end - start)


def _seconds(records: JsonRecords) -> np.ndarray:
    """The `timestamp` field as float seconds; records without the published fields are an error."""
    return request_timestamps(records, RAGPULSE_NAMES, "RAGPulse trace",
                              "RAGPulse timestamps are seconds from the start of the trace, e.g. \"82\".")


def _sorted_rows(records: JsonRecords, seconds: np.ndarray, start_s: float, components: tuple[str, ...]
                 ) -> pd.DataFrame:
    """The records (the whole file or some of its lines), arriving `start_s` on, stably sorted by time, validated."""
    where = records.locator(RAGPULSE_NAMES)
    canonical = pd.DataFrame(
        {
            "arrival_s": seconds - start_s,
            "prompt_tokens": records.column("input_length"),
            "output_tokens": records.column("output_length"),
        }
    )
    if "session_id" in records.fields:
        canonical["session_id"] = records.column("session_id")
    if "hash_ids" in records.fields:
        canonical["prefix_hashes"] = _chunk_ids(records.values("hash_ids"), components, where)
    order = np.argsort(seconds, kind="stable")
    return validate_trace(canonical.iloc[order], str(records.path), source=where.reorder(order))


def _chunk_ids(values: list[object], components: tuple[str, ...], where: Locator) -> list[tuple[int, ...]]:
    """Concatenate each row's component id lists (a missing component counts as empty).

    The ids themselves are checked to be integers by the validation of prefix_hashes.
    """
    out = []
    for position, value in enumerate(values):
        parts = [value.get(c) or [] for c in components] if type(value) is dict else None
        if parts is None or any(type(part) is not list for part in parts):
            raise _not_id_lists(value, position, where)
        out.append(tuple(chain.from_iterable(parts)))
    return out


def _not_id_lists(value: object, position: int, where: Locator) -> TraceError:
    if not isinstance(value, dict):
        problem = f"expected an object of chunk id lists, got {where.shown(value)}"
    else:
        bad = next(c for c in RAGPULSE_COMPONENTS if not isinstance(value.get(c) or [], list))
        problem = f"expected {bad} to be a list of integer chunk ids, got {where.shown(value.get(bad))}"
    return where.error(
        position,
        "prefix_hashes",
        problem,
        f"hash_ids maps each prompt component ({', '.join(RAGPULSE_COMPONENTS)}) to a list of integers.",
    )


def _checked_components(path: Path, components: Sequence[str]) -> tuple[str, ...]:
    chosen = (components,) if isinstance(components, str) else tuple(components)
    unknown = [c for c in chosen if c not in RAGPULSE_COMPONENTS]
    if unknown or not chosen or len(set(chosen)) != len(chosen):
        raise TraceError(
            f"{path}: option components must name each of {', '.join(RAGPULSE_COMPONENTS)} at most once, "
            f"got {list(chosen)!r}. List the prompt components in the order they appear in the prompt."
        )
    return chosen

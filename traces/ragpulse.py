"""RAGPulse (flashserve/RAGPulse) 0_trace.jsonl: a week of RAG requests with sessions and chunk ids."""
from __future__ import annotations

from collections.abc import Sequence
from itertools import chain
from pathlib import Path

import numpy as np
import pandas as pd

from servesim.traces.errors import Locator, TraceError
from servesim.traces.readers import read_jsonl, require_columns
from servesim.traces.schema import numbers, validate_trace

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
    where = records.locator(RAGPULSE_NAMES)
    require_columns(records.fields, ("timestamp", "input_length", "output_length"), where, "RAGPulse trace")
    seconds = numbers(
        records.column("timestamp"),
        where,
        "arrival_s",
        integer=False,
        minimum=None,
        fix="RAGPulse timestamps are seconds from the start of the trace, e.g. \"82\".",
    )
    canonical = pd.DataFrame(
        {
            "arrival_s": seconds - seconds.min(),
            "prompt_tokens": records.column("input_length"),
            "output_tokens": records.column("output_length"),
        }
    )
    if "session_id" in records.fields:
        canonical["session_id"] = records.column("session_id")
    if "hash_ids" in records.fields:
        canonical["prefix_hashes"] = _chunk_ids(records.values("hash_ids"), components, where)
    order = np.argsort(seconds, kind="stable")
    return validate_trace(canonical.iloc[order], str(path), source=where.reorder(order))


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

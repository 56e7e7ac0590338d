"""The shapes the profiler measures: token counts, attention (tokens x context), message sizes.

Grids are geometric, which suits interpolation in log space; they reach the sizes serving uses
(`max_num_batched_tokens` 8192 and batches of 256 on a GPU; a CPU runs small models with small
batches, so its grid stops earlier). `quick` grids are a handful of points, for tests.
"""
from __future__ import annotations

from dataclasses import dataclass

# Decode shapes are capped at this many cached positions in all (a batch of 256 at 4K context):
# the profiler holds several copies of the cache, and larger products are rare in serving.
MAX_DECODE_POSITIONS = 1 << 20


@dataclass(frozen=True)
class Grid:
    tokens: tuple[int, ...]
    """Token counts of the per-token operators."""
    entries: tuple[int, ...]
    """Sampled entries of the LM head and sampling."""
    prefill: tuple[tuple[int, int], ...]
    """(new tokens, prior context) of one prefill chunk."""
    decode: tuple[tuple[int, int], ...]
    """(decodes, context of each)."""
    message_bytes: tuple[int, ...]
    """Collective and copy sizes."""


def _geometric(lo: int, hi: int) -> list[int]:
    """1, 2, 3, 4, 6, 8, 12, 16, ... : powers of two and the midpoints between them."""
    values, power = [], 1
    while power <= hi:
        values += [v for v in (power, power * 3 // 2) if lo <= v <= hi]
        power *= 2
    return sorted(set(values))


def grid_for(device_type: str, max_context: int, quick: bool = False) -> Grid:
    """The profiling grid for a device (`cuda` or `cpu`), capped at the model's context length."""
    if quick:
        contexts = [0, 16, 64]
        return Grid(
            tokens=(1, 8, 64),
            entries=(1, 4, 16),
            prefill=tuple((n, c) for n in (1, 16, 64) for c in contexts),
            decode=tuple((b, c) for b in (1, 4, 16) for c in (16, 64)),
            message_bytes=(1 << 12, 1 << 16, 1 << 20),
        )
    gpu = device_type == "cuda"
    max_tokens, max_batch = (8192, 256) if gpu else (2048, 64)
    max_context = min(max_context, 32768 if gpu else 4096)
    contexts = [0] + _geometric(16, max_context)
    chunk_sizes = _geometric(1, max_tokens)
    return Grid(
        tokens=tuple(_geometric(1, max_tokens)),
        entries=tuple(_geometric(1, max_batch)),
        prefill=tuple((n, c) for n in chunk_sizes for c in contexts if n + c <= max_context),
        decode=tuple((b, c) for b in _geometric(1, max_batch) for c in contexts[1:]
                     if c < max_context and b * c <= MAX_DECODE_POSITIONS),
        message_bytes=tuple(1 << p for p in range(10, 29 if gpu else 25)),
    )

"""Synthetic shared prefixes: documents or system prompts that many requests start with.

Each request in the shared `share` gets one of `num_groups` prefixes (uniformly), prepended to
its own prompt; the prefix is described to the engine as hash ids of 16-token blocks, unique
per (group, block), so requests of one group can reuse each other's KV (prefix caching).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from servesim.traces.errors import TraceError

PREFIX_BLOCK_TOKENS = 16
_GROUP_STRIDE = 1 << 32


def add_shared_prefixes(
    table: pd.DataFrame, num_groups: int, tokens: int, share: float, rng: np.random.Generator
) -> pd.DataFrame:
    """`table` with shared prefixes prepended; a request's group is its first hash id."""
    if num_groups < 1 or tokens < PREFIX_BLOCK_TOKENS or not 0 < share <= 1:
        raise TraceError(
            f"shared_prefix: needs num_groups >= 1, tokens >= {PREFIX_BLOCK_TOKENS} and 0 < share <= 1, "
            f"got {num_groups}, {tokens}, {share}."
        )
    n = len(table)
    shared = rng.random(n) < share
    groups = rng.integers(0, num_groups, n)
    num_blocks = tokens // PREFIX_BLOCK_TOKENS
    used = np.unique(groups[shared]).tolist()  # only these chains are built: num_groups may be huge
    chains = {g: tuple(g * _GROUP_STRIDE + k for k in range(num_blocks)) for g in used}
    hashes = pd.Series([chains[g] if s else () for g, s in zip(groups.tolist(), shared.tolist(), strict=True)],
                       index=table.index, dtype=object)
    prompts = table["prompt_tokens"].to_numpy() + np.where(shared, tokens, 0)
    return table.assign(prompt_tokens=prompts, prefix_hashes=hashes, prefix_block_tokens=PREFIX_BLOCK_TOKENS)

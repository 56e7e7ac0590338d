"""Synthetic shared prefixes: documents or system prompts that many requests start with.

Each request in the shared `share` gets one of `num_groups` prefixes (uniformly), prepended to
its own prompt; the prefix is described to the engine as hash ids of 16-token blocks, unique
per (group, block), so requests of one group can reuse each other's KV (prefix caching).
"""
from __future__ import annotations

import copy

import numpy as np
import pandas as pd

from servesim.traces.errors import TraceError

PREFIX_BLOCK_TOKENS = 16
_GROUP_STRIDE = 1 << 32


SKIP_BLOCK = 1 << 16
"""Uniform floats drawn at a time while a stream is moved past them."""


def add_shared_prefixes(
    table: pd.DataFrame, num_groups: int, tokens: int, share: float, rng: np.random.Generator
) -> pd.DataFrame:
    """`table` with shared prefixes prepended; a request's group is its first hash id.

    Draws `len(table)` uniform floats (who shares), then as many groups.
    """
    return SharedPrefixes(num_groups, tokens, share, rng, len(table)).add(table)


class SharedPrefixes:
    """`add_shared_prefixes` for a table of `num_rows` rows given a chunk at a time, with the same draws.

    The whole table's draws are every row's uniform float, then every row's group, from one
    stream; a chunk needs its floats and its groups at once, so the groups come from a copy of
    the stream moved past the `num_rows` floats (drawn and dropped, a block at a time).
    """

    def __init__(self, num_groups: int, tokens: int, share: float, rng: np.random.Generator, num_rows: int) -> None:
        if num_groups < 1 or tokens < PREFIX_BLOCK_TOKENS or not 0 < share <= 1:
            raise TraceError(
                f"shared_prefix: needs num_groups >= 1, tokens >= {PREFIX_BLOCK_TOKENS} and 0 < share <= 1, "
                f"got {num_groups}, {tokens}, {share}."
            )
        self.num_groups, self.tokens, self.share = num_groups, tokens, share
        self._share_rng = rng
        self._group_rng = copy.deepcopy(rng)
        for first in range(0, num_rows, SKIP_BLOCK):
            self._group_rng.random(min(SKIP_BLOCK, num_rows - first))

    def add(self, table: pd.DataFrame) -> pd.DataFrame:
        """The next rows of the table, with their prefixes."""
        n = len(table)
        shared = self._share_rng.random(n) < self.share
        groups = self._group_rng.integers(0, self.num_groups, n)
        num_blocks = self.tokens // PREFIX_BLOCK_TOKENS
        used = np.unique(groups[shared]).tolist()  # only these chains are built: num_groups may be huge
        chains = {g: tuple(g * _GROUP_STRIDE + k for k in range(num_blocks)) for g in used}
        hashes = pd.Series([chains[g] if s else () for g, s in zip(groups.tolist(), shared.tolist(), strict=True)],
                           index=table.index, dtype=object)
        prompts = table["prompt_tokens"].to_numpy() + np.where(shared, self.tokens, 0)
        return table.assign(prompt_tokens=prompts, prefix_hashes=hashes, prefix_block_tokens=PREFIX_BLOCK_TOKENS)

"""Eviction policies: which unreferenced cached KV block is reused first when memory is needed."""
from __future__ import annotations

from typing import Any

from servesim.policies.base import CachedBlock, EvictionPolicy
from servesim.policies.registry import register


@register("eviction", "lru")
class LruEvictionPolicy(EvictionPolicy):
    """Evict the least recently used block first; within one release, the deepest block first.

    Source: the LRU policy of vLLM's automatic prefix caching and SGLang's RadixAttention
    (Zheng et al., "SGLang: Efficient Execution of Structured Language Model Programs",
    NeurIPS 2024): a request's blocks are released tail first, so shared heads live longest.
    """

    def key(self, block: CachedBlock, now: float) -> Any:
        return (block.last_used_s, -block.depth)


@register("eviction", "lfu")
class LfuEvictionPolicy(EvictionPolicy):
    """Evict the block reused least often first (ties: least recently used, deepest first).

    Keeps hot shared prefixes (system prompts) against one-off long contexts, the case LRU
    handles badly when a burst of unique prompts flushes the cache.
    """

    def key(self, block: CachedBlock, now: float) -> Any:
        return (block.num_hits, block.last_used_s, -block.depth)

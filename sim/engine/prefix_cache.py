"""Prefix caching: KV blocks of shared prompt prefixes are reused instead of recomputed.

As in vLLM's automatic prefix caching, a full block is identified by the content of the whole
prefix up to its end. Traces give that identity as hash ids of fixed-size prefix blocks
(Mooncake: one id per 512 tokens, each id standing for the whole prefix up to its block's end),
so engine block j, which ends at token e, is keyed by (the id of the trace block holding e, e's
offset in it). Blocks are reference counted: a block nobody uses keeps its content and stays
findable until the eviction policy picks it for reuse; allocation takes blank blocks first.

As in vLLM v1, which hashes every full block of computed tokens, a request preempted for
recompute keeps its other full blocks findable too (the blocks past its prompt's known identity,
generated tokens included): they are keyed by (request id, block index), since only that request
holds those tokens, and its readmission reuses whatever was not evicted meanwhile. They are keyed
when it is preempted rather than as they fill: nobody else could hit them earlier.
"""
from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Protocol

from servesim.policies.base import CachedBlock, EvictionPolicy
from servesim.policies.contract import policy_raised
from servesim.sim.engine.kv_memory import NO_HIT, BlockPool, PrefixHit
from servesim.sim.errors import EngineInvariantError


class PrefixedRequest(Protocol):
    request_id: int
    prompt_tokens: int
    num_tokens: int
    prefix_hashes: tuple[int, ...]
    prefix_block_tokens: int
    prefix_keys: list[int] | None


def num_keyed_blocks(request: PrefixedRequest, block_size: int) -> int:
    """How many leading blocks of the prompt have a known identity."""
    if not request.prefix_hashes:
        return 0
    known_tokens = min(request.prompt_tokens, len(request.prefix_hashes) * request.prefix_block_tokens)
    return known_tokens // block_size


BlockKey = int | tuple[int, int]
"""A prompt block's prefix identity, or (request id, block index) for a block only its request can hit."""


def block_keys(request: PrefixedRequest, block_size: int) -> list[int]:
    """The identity of the prefix ending with each keyed block of `request`'s prompt (cached on it)."""
    keys = request.prefix_keys
    if keys is None:
        hashes, per = request.prefix_hashes, request.prefix_block_tokens
        keys = []
        for index in range(num_keyed_blocks(request, block_size)):
            trace_block, offset = divmod((index + 1) * block_size - 1, per)
            keys.append(hashes[trace_block] * per + offset)
        request.prefix_keys = keys
    return keys


def block_key(request: PrefixedRequest, keys: list[int], index: int) -> BlockKey:
    """The key of block `index` of `request` (`keys` are its prompt keys): past them, its own."""
    return keys[index] if index < len(keys) else (request.request_id, index)


class PrefixCachingBlockPool(BlockPool):
    """A block pool whose full prompt blocks can be shared by every request with that prefix."""

    caches_prefixes = True

    def __init__(self, num_blocks: int, block_size: int, eviction: EvictionPolicy, clock: Callable[[], float]) -> None:
        super().__init__(num_blocks, block_size)
        self.eviction = eviction
        self.clock = clock
        self._refs = [0] * num_blocks
        self._key_of: dict[int, BlockKey] = {}
        self._block_of: dict[BlockKey, int] = {}
        self._hits: dict[int, int] = {}
        self._depth: dict[int, int] = {}
        self._evictable: list[tuple[object, int, int]] = []
        self._evictable_live: dict[int, int] = {}
        """Unreferenced cached blocks, each with the sequence number of its live heap entry."""
        self._pushes = 0
        self._version = 0
        self._memo: tuple[int, object, int, PrefixHit] = (-1, None, -1, NO_HIT)
        self.num_hit_tokens = 0
        self.num_evicted = 0
        """Cached blocks taken for reuse so far (their content lost)."""

    @property
    def num_free_blocks(self) -> int:
        return len(self._free) + len(self._evictable_live)

    @property
    def num_cached_free_blocks(self) -> int:
        return len(self._evictable_live)

    def cached_prefix(self, request: PrefixedRequest) -> PrefixHit:  # type: ignore[override]
        """The leading blocks found in the cache, leaving at least one token to compute (as vLLM does)."""
        memo_version, memo_request, memo_tokens, memo_hit = self._memo
        if memo_version == self._version and memo_request is request and memo_tokens == request.num_tokens:
            return memo_hit
        keys = block_keys(request, self.block_size)
        limit = (request.num_tokens - 1) // self.block_size
        block_of, refs = self._block_of, self._refs
        count = reclaimed = 0
        while count < limit:
            block = block_of.get(block_key(request, keys, count))
            if block is None:
                break
            reclaimed += refs[block] == 0
            count += 1
        hit = PrefixHit(count * self.block_size, count, reclaimed) if count else NO_HIT
        self._memo = (self._version, request, request.num_tokens, hit)
        return hit

    def num_exclusive_blocks(self, request: PrefixedRequest) -> int:  # type: ignore[override]
        return sum(1 for b in self._owned.get(request.request_id, ()) if self._refs[b] == 1)

    def reuse(self, request: PrefixedRequest) -> PrefixHit:
        """Give `request` the cached blocks of its prefix; returns the hit."""
        hit = self.cached_prefix(request)
        if not hit.num_blocks:
            return hit
        self._version += 1
        owned = self._owned.setdefault(request.request_id, [])
        keys = block_keys(request, self.block_size)
        for index in range(hit.num_blocks):
            block = self._block_of[block_key(request, keys, index)]
            if self._refs[block] == 0:
                del self._evictable_live[block]
            self._refs[block] += 1
            self._hits[block] = self._hits.get(block, 0) + 1
            owned.append(block)
        self.num_hit_tokens += hit.num_tokens
        return hit

    def register(self, request: PrefixedRequest, first: int, end: int) -> None:
        """Blocks [first, end) of `request` are now full of computed prompt tokens: make them findable."""
        owned = self._owned[request.request_id]
        keys = block_keys(request, self.block_size)
        for index in range(first, min(end, len(keys))):
            block = owned[index]
            key = keys[index]
            if block in self._key_of or key in self._block_of:
                continue  # the same prefix was computed twice at once: one copy is enough
            self._key_of[block] = key
            self._block_of[key] = block
            self._depth[block] = index
        self._version += 1

    def keep_for_recompute(self, request: PrefixedRequest, num_computed_tokens: int) -> None:  # type: ignore[override]
        """`request` is preempted for recompute: key its full blocks of computed tokens that have no
        prompt identity (its own from then on) so that its readmission finds them unless evicted."""
        owned = self._owned.get(request.request_id, ())
        keys = block_keys(request, self.block_size)
        key_of, block_of, depth = self._key_of, self._block_of, self._depth
        for index in range(len(keys), min(len(owned), num_computed_tokens // self.block_size)):
            block = owned[index]
            key = (request.request_id, index)
            if block in key_of or key in block_of:
                continue  # reused from the cache, or an older copy of the same tokens is still findable
            key_of[block] = key
            block_of[key] = block
            depth[block] = index
        self._version += 1

    def allocate(self, owner: int, count: int) -> None:
        """Blank blocks first, then cached ones in the eviction policy's order."""
        if count > self.num_free_blocks:
            raise EngineInvariantError(
                f"KV pool: owner {owner} asked for {count} blocks with {self.num_free_blocks} free"
            )
        if count <= 0:
            return
        self._version += 1
        blank = min(count, len(self._free))
        taken = self._free[len(self._free) - blank:]
        taken.reverse()
        del self._free[len(self._free) - blank:]
        while len(taken) < count:
            _, entry, block = heapq.heappop(self._evictable)
            if self._evictable_live.get(block) != entry:
                continue  # reused, or freed again with a newer key, since this entry was pushed
            del self._evictable_live[block]
            del self._block_of[self._key_of.pop(block)]
            self._hits.pop(block, None)
            self._depth.pop(block, None)
            taken.append(block)
            self.num_evicted += 1
        for block in taken:
            self._refs[block] = 1
        self._owned.setdefault(owner, []).extend(taken)

    def release(self, owner: int) -> int:
        blocks = self._owned.pop(owner, None)
        if not blocks:
            return 0
        self._version += 1
        now = self.clock()
        refs, key_of, depth, hits = self._refs, self._key_of, self._depth, self._hits
        evictable, live, key = self._evictable, self._evictable_live, self.eviction.key
        try:
            for block in reversed(blocks):
                refs[block] -= 1
                if refs[block]:
                    continue
                if block in key_of:
                    self._pushes += 1
                    heapq.heappush(evictable, (key(CachedBlock(block, depth[block], now, hits.get(block, 0)), now),
                                               self._pushes, block))
                    live[block] = self._pushes
                else:
                    self._free.append(block)
        except Exception as exc:  # the key raised, or keys of different blocks do not compare
            raise policy_raised(self.eviction, "eviction.key", now, exc) from exc
        if len(evictable) > 4 * len(live) + 1024:
            self._evictable = [item for item in evictable if live.get(item[2]) == item[1]]
            heapq.heapify(self._evictable)
        return len(blocks)

    def check_conservation(self) -> None:
        """Each block is blank, cached and unreferenced, or referenced as often as it is owned."""
        counts = [0] * self.num_blocks
        for blocks in self._owned.values():
            for block in blocks:
                counts[block] += 1
        if counts != self._refs:
            raise EngineInvariantError("KV pool: reference counts differ from the blocks owners hold")
        unreferenced = {b for b in range(self.num_blocks) if counts[b] == 0}
        free = set(self._free)
        cached = set(self._evictable_live)
        if len(free) != len(self._free) or free & cached or free | cached != unreferenced:
            raise EngineInvariantError(
                f"KV pool: {len(self._free)} blank + {len(self._evictable_live)} cached free blocks "
                f"!= {len(unreferenced)} unreferenced blocks"
            )
        if any(self._block_of.get(key) != block for block, key in self._key_of.items()) or len(self._block_of) != len(
            self._key_of
        ):
            raise EngineInvariantError("KV pool: the prefix index is inconsistent")

"""Paged KV memory of one replica: a pool of fixed-size blocks, handed out and taken back whole.

The pool grants or refuses; it never decides whom to preempt (the scheduler and preemption
policy do). Block ids are kept per owner so that conservation can be checked at any time.
This pool shares nothing; `sim.engine.prefix_cache` adds prefix reuse on top of the same interface.
"""
from __future__ import annotations

from dataclasses import dataclass

from servesim.sim.errors import EngineInvariantError


@dataclass(frozen=True, slots=True)
class PrefixHit:
    """What a request would reuse from the prefix cache if admitted now."""

    num_tokens: int = 0
    num_blocks: int = 0
    num_reclaimed: int = 0
    """Reused blocks that nobody references (they leave the free pool when reused)."""


NO_HIT = PrefixHit()


class BlockPool:
    """A fixed number of KV blocks of `block_size` tokens each, owned by requests."""

    caches_prefixes = False
    num_evicted = 0
    """Cached blocks taken for reuse so far: none without a prefix cache."""

    def __init__(self, num_blocks: int, block_size: int) -> None:
        if num_blocks < 0 or block_size < 1:
            raise ValueError(f"BlockPool needs num_blocks >= 0 and block_size >= 1, got {num_blocks}, {block_size}")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self._free: list[int] = list(range(num_blocks - 1, -1, -1))
        self._owned: dict[int, list[int]] = {}

    @property
    def num_free_blocks(self) -> int:
        return len(self._free)

    @property
    def num_blank_blocks(self) -> int:
        """Free blocks that hold nothing findable: all of them without a prefix cache."""
        return len(self._free)

    @property
    def num_used_blocks(self) -> int:
        return self.num_blocks - self.num_free_blocks

    def blocks_of(self, owner: int) -> list[int]:
        return list(self._owned.get(owner, ()))

    def cached_prefix(self, request: object) -> PrefixHit:
        return NO_HIT

    def keep_for_recompute(self, request: object, num_computed_tokens: int) -> None:
        """A pool without prefix caching forgets a preempted request's KV."""

    def num_exclusive_blocks(self, request: object) -> int:
        return len(self._owned.get(request.request_id, ()))  # type: ignore[attr-defined]

    def allocate(self, owner: int, count: int) -> None:
        """Give `owner` `count` more blocks; the caller has checked that they are free."""
        free = self._free
        if count > len(free):
            raise EngineInvariantError(f"KV pool: owner {owner} asked for {count} blocks with {len(free)} free")
        if count == 1:  # the usual case: a decode crossing into a new block
            self._owned.setdefault(owner, []).append(free.pop())
            return
        if count <= 0:
            return
        taken = free[-count:]
        taken.reverse()
        del free[-count:]
        self._owned.setdefault(owner, []).extend(taken)

    def release(self, owner: int) -> int:
        """Return every block of `owner` to the pool; returns how many it held."""
        blocks = self._owned.pop(owner, None)
        if not blocks:
            return 0
        self._free.extend(reversed(blocks))
        return len(blocks)

    def check_conservation(self) -> None:
        """Every block is either free or owned by exactly one owner."""
        owned = [b for blocks in self._owned.values() for b in blocks]
        seen = set(owned) | set(self._free)
        if len(owned) + len(self._free) != self.num_blocks or len(seen) != self.num_blocks:
            raise EngineInvariantError(
                f"KV pool: {len(owned)} owned + {len(self._free)} free != {self.num_blocks} blocks"
            )

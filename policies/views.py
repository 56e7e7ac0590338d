"""Read-only views that policies decide from.

The engine passes its live objects typed as these protocols: a policy may read any attribute
listed here and must not write to them. Tests build plain dataclasses with the same attributes,
so every policy is testable without SimPy.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class RequestView(Protocol):
    @property
    def request_id(self) -> int: ...
    @property
    def arrival_s(self) -> float: ...
    @property
    def prompt_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...
    @property
    def priority(self) -> int: ...
    @property
    def num_computed_tokens(self) -> int: ...
    @property
    def num_generated(self) -> int: ...
    @property
    def num_tokens(self) -> int: ...
    @property
    def num_blocks(self) -> int: ...
    @property
    def num_preemptions(self) -> int: ...


class KvView(Protocol):
    @property
    def num_blocks(self) -> int: ...
    @property
    def num_free_blocks(self) -> int: ...
    @property
    def block_size(self) -> int: ...


class ReplicaView(Protocol):
    """What a scheduler and a router see of one replica."""

    @property
    def replica_id(self) -> int: ...
    @property
    def running(self) -> Sequence[RequestView]: ...
    @property
    def waiting(self) -> Sequence[RequestView]: ...
    @property
    def kv(self) -> KvView: ...


def new_blocks_needed(request: RequestView, num_new_tokens: int, block_size: int) -> int:
    """Blocks `request` needs beyond those it holds to compute `num_new_tokens` more tokens."""
    total = -(-(request.num_computed_tokens + num_new_tokens) // block_size)
    return max(0, total - request.num_blocks)

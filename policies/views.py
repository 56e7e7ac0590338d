"""Read-only views that policies decide from.

The engine passes read-only view objects that implement these protocols
(`sim.engine.views`): a policy may read any attribute listed here, and writing raises. Tests
build plain dataclasses with the same attributes, so every policy is testable without SimPy.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

from servesim.hwmodels import CostModel


class RequestView(Protocol):
    """One request as a policy sees it. Times are simulated seconds."""

    @property
    def request_id(self) -> int: ...
    @property
    def arrival_s(self) -> float: ...
    @property
    def prompt_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int:
        """The true output length: only oracle predictors may read it."""
    @property
    def priority(self) -> int:
        """Smaller is more important (0 is the default class)."""
    @property
    def slo_class(self) -> str: ...
    @property
    def ttft_deadline_s(self) -> float:
        """arrival + the TTFT objective of its class (infinity without one)."""
    @property
    def prefix_group(self) -> int | None:
        """Id of the first prefix block it shares with others (None without prefix hashes)."""
    @property
    def session_id(self) -> str | None:
        """The conversation or program it belongs to (None when the trace has no sessions)."""
    @property
    def num_computed_tokens(self) -> int: ...
    @property
    def num_generated(self) -> int: ...
    @property
    def num_tokens(self) -> int:
        """Prompt plus generated tokens: what has to be computed before the next token."""
    @property
    def num_blocks(self) -> int:
        """KV blocks held on the device."""
    @property
    def num_preemptions(self) -> int: ...
    @property
    def is_swapped(self) -> bool:
        """Its KV sits in host memory; admitting it swaps it back in."""


class CachedPrefix(Protocol):
    @property
    def num_tokens(self) -> int:
        """Prompt tokens whose KV is cached and would be reused on admission."""
    @property
    def num_blocks(self) -> int: ...
    @property
    def num_reclaimed(self) -> int:
        """Of those blocks, how many are unreferenced (they count as free until reused)."""


class KvView(Protocol):
    @property
    def num_blocks(self) -> int: ...
    @property
    def num_free_blocks(self) -> int:
        """Blocks that can be allocated now, including unreferenced cached blocks."""
    @property
    def block_size(self) -> int: ...
    def cached_prefix(self, request: RequestView) -> CachedPrefix:
        """What admitting `request` now would reuse from the prefix cache (nothing if caching is off)."""
        ...
    def num_exclusive_blocks(self, request: RequestView) -> int:
        """Blocks that preempting `request` would free (those no other request shares)."""
        ...


class IterationView(Protocol):
    """An iteration in flight or suspended at an operator boundary."""

    @property
    def entries(self) -> Sequence[tuple[RequestView, int]]: ...
    @property
    def start_s(self) -> float: ...
    @property
    def remaining_s(self) -> float:
        """Seconds of work left (from now, or from the boundary it was suspended at)."""


class ReplicaView(Protocol):
    """What a scheduler and a router see of one replica."""

    @property
    def replica_id(self) -> int: ...
    @property
    def running(self) -> Sequence[RequestView]:
        """Admitted requests in admission order (suspended ones excluded)."""
    @property
    def waiting(self) -> Sequence[RequestView]:
        """Queued requests in arrival order; preempted ones go back to the front."""
    @property
    def suspended(self) -> Sequence[IterationView]:
        """Iterations interrupted at an operator boundary, oldest first."""
    @property
    def kv(self) -> KvView: ...
    @property
    def cost_model(self) -> CostModel:
        """The replica's cost model, for policies that estimate iteration times."""
    @property
    def recently_finished(self) -> Sequence[RequestView]:
        """The most recently finished requests (up to a thousand, oldest first)."""
    @property
    def num_outstanding(self) -> int:
        """Requests routed here and not yet finished, dropped or rejected (a decode replica's count
        includes those on their way to it from a prefill replica)."""
    @property
    def outstanding_tokens(self) -> int:
        """Tokens those requests still have to compute or generate: for each, its tokens not yet
        computed plus its output tokens not yet generated (the true output length: a router told
        each request's output budget). A count kept by the replica, so reading it costs nothing;
        it changes as requests decode, so a router reading it reads progress."""
    @property
    def pool(self) -> str:
        """Its pool's name ("default" for a config without `cluster.pools`)."""
    @property
    def role(self) -> str:
        """Its pool's role: "unified", "prefill" or "decode"."""
    @property
    def hardware(self) -> str:
        """Its hardware catalog name."""
    @property
    def nodes(self) -> tuple[int, ...]:
        """The nodes its devices sit on (two replicas sharing one move KV inside a node)."""


def is_decode(request: RequestView) -> bool:
    """Decoding: it has sampled a token and has only that token left to compute (the one
    definition, used by the schedulers, both engines and the fast-forward)."""
    return request.num_generated > 0 and request.num_tokens - request.num_computed_tokens == 1


def tokens_left(request: RequestView) -> int:
    """Tokens still to compute before its next token is sampled, plus output tokens still to
    generate: what a replica has yet to do for it (it reads the true output length)."""
    return request.num_tokens - request.num_computed_tokens + request.output_tokens - request.num_generated


def decodes_and_prefills(requests: Sequence[RequestView]) -> tuple[list[RequestView], list[RequestView]]:
    """Running requests split into those decoding one token and those still computing a prompt."""
    decodes: list[RequestView] = []
    prefills: list[RequestView] = []
    for request in requests:
        (decodes if is_decode(request) else prefills).append(request)
    return decodes, prefills


def blocks_for(num_tokens: int, block_size: int) -> int:
    """KV blocks that hold `num_tokens` tokens (the one definition of blocks needed)."""
    return -(-num_tokens // block_size)


def new_blocks_needed(request: RequestView, num_new_tokens: int, block_size: int) -> int:
    """Blocks `request` needs beyond those it holds to compute `num_new_tokens` more tokens."""
    num_tokens = request.num_computed_tokens + num_new_tokens
    held = request.num_blocks
    if num_tokens <= held * block_size:
        return 0  # they fit in its blocks (a decode, except at a block boundary): no division
    return blocks_for(num_tokens, block_size) - held


Viewed = TypeVar("Viewed", bound=RequestView)


def blocks_short(requests: Sequence[Viewed], contexts: Sequence[int], num_new_tokens: int, block_size: int,
                 ) -> list[tuple[Viewed, int]]:
    """`new_blocks_needed` of `num_new_tokens` more tokens for each of `requests`, whose computed
    tokens are `contexts` (in the same order): those that need blocks, each with how many. One
    call for a batch of decodes instead of one a request (the engine's decode loops); the rule
    is the one above, and a test holds the two together."""
    return [(request, blocks_for(context + num_new_tokens, block_size) - request.num_blocks)
            for request, context in zip(requests, contexts, strict=True)
            if context + num_new_tokens > request.num_blocks * block_size]


def computed_on_admission(request: RequestView, kv: KvView) -> int:
    """Tokens of `request` already computed when it is scheduled now.

    A request with KV (running, or swapped out) starts from its own progress; one without
    starts after the prefix cache's hit.
    """
    if request.num_computed_tokens or request.num_blocks or request.is_swapped:
        return request.num_computed_tokens
    return kv.cached_prefix(request).num_tokens


def blocks_to_admit(request: RequestView, num_new_tokens: int, kv: KvView) -> int:
    """Free blocks that scheduling `num_new_tokens` more tokens of `request` takes.

    With a prefix hit, the reused blocks cost nothing except those unreferenced ones that
    leave the free pool; the rest of the tokens need blocks of their own.
    """
    if request.num_computed_tokens or request.num_blocks or request.is_swapped:
        return new_blocks_needed(request, num_new_tokens, kv.block_size)
    hit = kv.cached_prefix(request)
    return blocks_for(hit.num_tokens + num_new_tokens, kv.block_size) - hit.num_blocks + hit.num_reclaimed

"""Hand-made views: plain dataclasses with the attributes of the `policies.views` protocols.

Policies are tested with these instead of the engine's objects, so a test needs no SimPy. The
helpers build requests in the states the engine produces (waiting, preempted, swapped out,
prefilling, decoding) with consistent token and block counts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from servesim.hwmodels import ConstantCostModel, CostModel
from servesim.policies.views import blocks_for, tokens_left


@dataclass
class FakeRequest:
    request_id: int
    arrival_s: float = 0.0
    prompt_tokens: int = 16
    output_tokens: int = 8
    priority: int = 0
    slo_class: str = "default"
    ttft_deadline_s: float = math.inf
    prefix_group: int | None = None
    session_id: str | None = None
    num_computed_tokens: int = 0
    num_generated: int = 0
    num_blocks: int = 0
    num_preemptions: int = 0
    is_swapped: bool = False

    @property
    def num_tokens(self) -> int:
        return self.prompt_tokens + self.num_generated


@dataclass
class FakeCachedPrefix:
    num_tokens: int = 0
    num_blocks: int = 0
    num_reclaimed: int = 0


@dataclass
class FakeKv:
    num_blocks: int = 1000
    num_free_blocks: int = 1000
    block_size: int = 16
    prefixes: dict[int, FakeCachedPrefix] = field(default_factory=dict)
    """Prefix-cache hits by request id (none: caching off); like the engine's, a hit is whole
    blocks and leaves at least one prompt token to compute."""
    shared_blocks: dict[int, int] = field(default_factory=dict)
    """Blocks of a request that other requests share, by request id (preempting it keeps them)."""

    def cached_prefix(self, request: FakeRequest) -> FakeCachedPrefix:
        return self.prefixes.get(request.request_id, FakeCachedPrefix())

    def num_exclusive_blocks(self, request: FakeRequest) -> int:
        return request.num_blocks - self.shared_blocks.get(request.request_id, 0)


@dataclass
class FakeIteration:
    entries: list[tuple[FakeRequest, int]]
    start_s: float = 0.0
    remaining_s: float = 0.01


@dataclass
class FakeReplica:
    running: list[FakeRequest] = field(default_factory=list)
    waiting: list[FakeRequest] = field(default_factory=list)
    kv: FakeKv = field(default_factory=FakeKv)
    suspended: list[FakeIteration] = field(default_factory=list)
    replica_id: int = 0
    cost_model: CostModel = field(default_factory=lambda: ConstantCostModel(0.01, 1e-5))
    recently_finished: list[FakeRequest] = field(default_factory=list)
    pool: str = "default"
    role: str = "unified"
    hardware: str = "h100-sxm"
    nodes: tuple[int, ...] = (0,)

    def _outstanding(self) -> list[FakeRequest]:
        held = [request for iteration in self.suspended for request, _ in iteration.entries]
        return self.running + self.waiting + held

    @property
    def num_outstanding(self) -> int:
        return len(self._outstanding())

    @property
    def outstanding_tokens(self) -> int:
        return sum(tokens_left(request) for request in self._outstanding())


def waiting(request_id: int, prompt: int = 16, output: int = 8, arrival_s: float = 0.0,
            **fields: object) -> FakeRequest:
    """A request that has never run."""
    return FakeRequest(request_id, arrival_s, prompt, output, **fields)


def preempted(request_id: int, prompt: int, output: int, generated: int, arrival_s: float = 0.0,
              swapped: bool = False, **fields: object) -> FakeRequest:
    """A request back in the queue after a preemption: recomputes everything, or swaps its KV back in."""
    request = FakeRequest(request_id, arrival_s, prompt, output, num_generated=generated, num_preemptions=1, **fields)
    if swapped:
        request.num_computed_tokens = request.num_tokens - 1
        request.is_swapped = True
    return request


def prefilling(request_id: int, prompt: int, computed: int, output: int = 8, block_size: int = 16,
               arrival_s: float = 0.0, **fields: object) -> FakeRequest:
    """A running request whose prompt is computed up to `computed` tokens (chunked prefill)."""
    return FakeRequest(request_id, arrival_s, prompt, output, num_computed_tokens=computed,
                       num_blocks=blocks_for(computed, block_size), **fields)


def decoding(request_id: int, prompt: int, output: int, generated: int = 1, block_size: int = 16,
             arrival_s: float = 0.0, **fields: object) -> FakeRequest:
    """A running request that has `generated` tokens and computes one more each iteration."""
    computed = prompt + generated - 1
    return FakeRequest(request_id, arrival_s, prompt, output, num_computed_tokens=computed, num_generated=generated,
                       num_blocks=blocks_for(computed, block_size), **fields)


def finished(request_id: int, output: int, slo_class: str = "default", arrival_s: float = 0.0) -> FakeRequest:
    """A finished request, as in `recently_finished`."""
    return FakeRequest(request_id, arrival_s, 16, output, slo_class=slo_class, num_generated=output)

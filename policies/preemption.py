"""Preemption policies: whom to evict when KV blocks run out."""
from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

from pydantic import Field

from policies.base import PolicyParams, PreemptionPolicy
from policies.registry import register
from policies.views import RequestView


class VictimOrder(str, Enum):
    NEWEST = "newest"
    LOWEST_PRIORITY = "lowest_priority"
    LARGEST = "largest"


class RecomputeParams(PolicyParams):
    victim: VictimOrder = Field(
        VictimOrder.NEWEST,
        description="newest admitted, lowest priority (largest priority value), or largest KV footprint",
    )


@register("preemption", "recompute")
class RecomputePreemptionPolicy(PreemptionPolicy):
    """Free the victim's KV blocks and recompute its tokens when it is admitted again.

    Source: Kwon et al., "Efficient Memory Management for Large Language Model Serving with
    PagedAttention", SOSP 2023 (Section 4.5, recomputation). The victim keeps the tokens it has
    generated; on readmission it prefills prompt plus generated tokens, then decodes on.
    """

    Params = RecomputeParams
    params: RecomputeParams

    def select_victim(self, candidates: Sequence[RequestView], now: float) -> RequestView:
        order = self.params.victim
        if order is VictimOrder.NEWEST:
            return candidates[-1]
        positions = range(len(candidates))
        if order is VictimOrder.LOWEST_PRIORITY:
            best = max(positions, key=lambda i: (candidates[i].priority, i))
        else:
            best = max(positions, key=lambda i: (candidates[i].num_blocks, i))
        return candidates[best]

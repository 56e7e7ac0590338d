"""Preemption policies: whom to evict when KV blocks run out, and whether to recompute or swap."""
from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

from pydantic import Field

from servesim.policies.base import PolicyParams, PreemptionPolicy
from servesim.policies.decisions import PreemptionMode
from servesim.policies.registry import register
from servesim.policies.views import KvView, RequestView


class VictimOrder(str, Enum):
    NEWEST = "newest"
    LOWEST_PRIORITY = "lowest_priority"
    LARGEST = "largest"


class VictimParams(PolicyParams):
    victim: VictimOrder = Field(
        VictimOrder.NEWEST,
        description="newest admitted, lowest priority (largest priority value), or largest KV footprint",
    )


class VictimSelection(PreemptionPolicy):
    """Victim choice shared by the built-in preemption policies."""

    Params = VictimParams
    params: VictimParams

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


@register("preemption", "recompute")
class RecomputePreemptionPolicy(VictimSelection):
    """Free the victim's KV blocks and recompute its tokens when it is admitted again.

    Source: Kwon et al., "Efficient Memory Management for Large Language Model Serving with
    PagedAttention", SOSP 2023 (Section 4.5, recomputation). The victim keeps the tokens it has
    generated; on readmission it prefills prompt plus generated tokens, then decodes on.
    """


@register("preemption", "swap")
class SwapPreemptionPolicy(VictimSelection):
    """Move the victim's KV blocks to host memory and back when it is admitted again.

    Source: Kwon et al., SOSP 2023 (Section 4.5, swapping). Both copies cross the device-host
    link (`hardware.host_link_gbps`) and add to the iteration that performs them; the host
    pool holds `memory.swap_space_gib` per device. When it is full, the victim is recomputed.
    """

    def mode(self, victim: RequestView, host: KvView, now: float) -> PreemptionMode:
        return PreemptionMode.SWAP if host.num_free_blocks >= victim.num_blocks else PreemptionMode.RECOMPUTE

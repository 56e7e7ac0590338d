"""Transfer policies: which decode replica gets a prefilled request, and how its KV gets there.

Both built-ins choose the decode replica the same way: one that shares a node with the prefill
replica first (the KV then moves over NVLink instead of the slower network between nodes, as
DistServe places paired instances; Zhong et al., OSDI'24), then the least loaded (fewest
requests outstanding, then most free KV blocks, then the lowest index). They differ in when the
KV moves: `after_prefill` sends it whole once the prefill is done (DistServe), `layerwise`
streams each group of layers' KV as soon as those layers are computed, so that only the last
group's transfer adds to the time to first token (Splitwise, Patel et al., ISCA'24; Mooncake,
Qin et al., FAST'25).
"""
from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from servesim.policies.base import PolicyParams, TransferDecision, TransferPolicy
from servesim.policies.registry import register
from servesim.policies.views import ReplicaView, RequestView


def decode_choice(source: ReplicaView, destinations: Sequence[ReplicaView]) -> int:
    """Index of the decode replica to use: same node as `source` first, then the least loaded."""
    source_nodes = set(source.nodes)

    def key(index: int) -> tuple[bool, int, int, int]:
        replica = destinations[index]
        remote = source_nodes.isdisjoint(replica.nodes)
        return remote, replica.num_outstanding, -replica.kv.num_free_blocks, index

    return min(range(len(destinations)), key=key)


@register("transfer", "after_prefill")
class AfterPrefillTransferPolicy(TransferPolicy):
    """Send the whole KV once the prefill is done, to a same-node decode replica first, else the least loaded."""

    def plan(self, request: RequestView, source: ReplicaView, destinations: Sequence[ReplicaView],
             now: float) -> TransferDecision:
        return TransferDecision(decode_choice(source, destinations), layerwise=False)


class LayerwiseParams(PolicyParams):
    layer_groups: int = Field(
        4, ge=1, le=128, description="groups of layers whose KV leaves together, each as soon as its layers are "
        "computed (more groups: finer overlap, more transfers)"
    )


@register("transfer", "layerwise")
class LayerwiseTransferPolicy(TransferPolicy):
    """Stream the KV group of layers by group while the prefill computes; same-node first, else least loaded."""

    Params = LayerwiseParams
    params: LayerwiseParams

    def plan(self, request: RequestView, source: ReplicaView, destinations: Sequence[ReplicaView],
             now: float) -> TransferDecision:
        return TransferDecision(decode_choice(source, destinations), layerwise=True,
                                layer_groups=self.params.layer_groups)

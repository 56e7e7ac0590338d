"""The `cluster.topology` config section as a `Topology`."""
from __future__ import annotations

from collections.abc import Sequence

from servesim.sim.experiment.config import LinkOverrideConfig, TopologyConfig
from servesim.sim.network.topology import LinkConfig, PoolShape, Topology


def topology_for(shapes: Sequence[PoolShape], config: TopologyConfig | None = None) -> Topology:
    """Place `shapes` with the section's overrides (None or an empty section: the entries' figures)."""
    config = config or TopologyConfig()
    return Topology.build(shapes, devices_per_node=config.devices_per_node,
                          intra_node=_link(config.intra_node), inter_node=_link(config.inter_node),
                          host=_link(config.host))


def _link(section: LinkOverrideConfig) -> LinkConfig:
    return LinkConfig(gbps=section.gbps, latency_us=section.latency_us)

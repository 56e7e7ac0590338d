"""The cluster's network: topology and placement, device ports, and max-min fair transfers.

`Topology.build` places pools on nodes; `Network(env, topology).send(...)` moves bytes between
devices; `network_summary` and `write_link_series` put its accounting into a run's results.
"""
from servesim.sim.network.config import topology_for
from servesim.sim.network.link_stats import LinkSample
from servesim.sim.network.network import Network, TransferRecord, run_to_last_event
from servesim.sim.network.results import has_traffic, link_series, network_summary, write_link_series
from servesim.sim.network.topology import LinkConfig, LinkId, PoolShape, Topology

__all__ = [
    "LinkConfig", "LinkId", "LinkSample", "Network", "PoolShape", "Topology", "TransferRecord", "has_traffic",
    "link_series", "network_summary", "run_to_last_event", "topology_for", "write_link_series",
]

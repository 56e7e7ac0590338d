"""Placement of pools on nodes, and the ports and latencies between devices."""
from dataclasses import replace

import pytest

from servesim.hwmodels.catalog import load_hardware
from servesim.sim.network import LinkConfig, PoolShape, Topology
from servesim.sim.network.topology import Direction, LinkId, LinkKind

H100 = load_hardware("h100-sxm")
A100 = load_hardware("a100-80g")


def nodes_of(topology: Topology, pool: str, replicas: int) -> list[set[int]]:
    return [{topology.node_of(d).index for d in topology.devices(pool, r)} for r in range(replicas)]


def test_replicas_pack_into_nodes_without_straddling() -> None:
    topology = Topology.build([PoolShape("default", H100, replicas=3, devices_per_replica=3)])
    assert [topology.devices("default", r) for r in range(3)] == [(0, 1, 2), (3, 4, 5), (8, 9, 10)]
    assert nodes_of(topology, "default", 3) == [{0}, {0}, {1}]
    assert topology.num_devices == 16


def test_a_replica_larger_than_a_node_takes_whole_consecutive_nodes() -> None:
    shapes = [PoolShape("big", H100, 2, 12), PoolShape("small", H100, 1, 1)]
    topology = Topology.build(shapes)
    assert topology.devices("big", 0) == tuple(range(12))
    assert topology.devices("big", 1) == tuple(range(16, 28))
    assert topology.devices("small", 0) == (32,)


def test_pools_of_one_hardware_share_a_node_and_new_hardware_starts_a_node() -> None:
    shapes = [PoolShape("prefill", H100, 2, 2), PoolShape("decode", H100, 2, 2), PoolShape("cheap", A100, 1, 1)]
    topology = Topology.build(shapes)
    assert topology.devices("decode", 0) == (4, 5)
    assert topology.same_node(topology.devices("prefill", 0)[0], topology.devices("decode", 1)[0])
    assert topology.devices("cheap", 0) == (8,)
    assert topology.node_of(8).hardware.name == "a100-80g"


def test_links_come_from_the_entry_unless_overridden() -> None:
    topology = Topology.build([PoolShape("p", H100, 9, 1)])
    out_port = LinkId(0, LinkKind.FABRIC, Direction.OUT)
    nic = LinkId(0, LinkKind.NIC, Direction.OUT)
    assert topology.capacity(out_port) == H100.intra_node_link_gbps * 1e9
    assert topology.capacity(nic) == H100.inter_node_link_gbps * 1e9
    assert topology.latency_s(0, 1) == pytest.approx(H100.link_latency_us * 1e-6)
    assert topology.latency_s(0, 8) == pytest.approx(H100.inter_node_latency_us * 1e-6)
    custom = Topology.build([PoolShape("p", H100, 9, 1)], devices_per_node=4,
                            intra_node=LinkConfig(gbps=100), inter_node=LinkConfig(gbps=12.5, latency_us=20))
    assert custom.capacity(out_port) == 100e9
    assert custom.latency_s(0, 1) == pytest.approx(H100.link_latency_us * 1e-6)
    assert custom.capacity(nic) == 12.5e9
    assert custom.latency_s(0, 4) == pytest.approx(20e-6)
    assert len(custom.nodes) == 3


def test_paths_use_the_fabric_inside_a_node_and_the_nics_between_nodes() -> None:
    topology = Topology.build([PoolShape("p", H100, 16, 1)])
    assert topology.path(3, 3) == ()
    assert topology.path(1, 2) == (LinkId(1, LinkKind.FABRIC, Direction.OUT), LinkId(2, LinkKind.FABRIC, Direction.IN))
    assert topology.path(1, 9) == (LinkId(1, LinkKind.NIC, Direction.OUT), LinkId(9, LinkKind.NIC, Direction.IN))
    assert topology.link_name(LinkId(9, LinkKind.NIC, Direction.IN)) == "node1/dev9/nic"


def test_between_nodes_of_different_hardware_the_slower_latency_counts() -> None:
    slow = replace(A100, inter_node_latency_us=40.0)
    topology = Topology.build([PoolShape("a", H100, 1, 1), PoolShape("b", slow, 1, 1)])
    assert topology.latency_s(0, 8) == pytest.approx(40e-6)


def test_unknown_replicas_and_devices_are_named() -> None:
    topology = Topology.build([PoolShape("p", H100, 1, 1)])
    with pytest.raises(KeyError, match="no replica 1 in pool 'p'"):
        topology.devices("p", 1)
    with pytest.raises(KeyError, match="device 99"):
        topology.node_of(99)

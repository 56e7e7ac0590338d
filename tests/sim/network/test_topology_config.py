"""The `cluster.topology` section: validation, resolution into a Topology, and the resolved config."""
import pytest
from pydantic import ValidationError

from servesim.hwmodels.catalog import load_hardware
from servesim.sim.experiment.config import ClusterConfig, TopologyConfig
from servesim.sim.network import PoolShape, topology_for
from servesim.sim.network.topology import Direction, LinkId, LinkKind

H100 = load_hardware("h100-sxm")


def test_the_section_overrides_the_hardware_entry_key_by_key() -> None:
    section = TopologyConfig.model_validate({"devices_per_node": 4, "inter_node": {"gbps": 12.5}})
    topology = topology_for([PoolShape("p", H100, 2, 4)], section)
    assert topology.devices("p", 1) == (4, 5, 6, 7)
    assert not topology.same_node(0, 4)
    assert topology.capacity(LinkId(0, LinkKind.NIC, Direction.OUT)) == 12.5e9
    assert topology.latency_s(0, 4) == pytest.approx(H100.inter_node_latency_us * 1e-6)
    assert topology.capacity(LinkId(0, LinkKind.FABRIC, Direction.OUT)) == H100.intra_node_link_gbps * 1e9


def test_no_section_means_the_entries_figures() -> None:
    topology = topology_for([PoolShape("p", H100, 9, 1)])
    assert [node.num_devices for node in topology.nodes] == [H100.devices_per_node] * 2


def test_a_node_smaller_than_one_replica_is_refused_naming_the_key() -> None:
    with pytest.raises(ValidationError, match=r"cluster.topology.devices_per_node: 2 devices per node cannot hold "
                                              r"one replica of tp 2 x pp 2 \(4 devices\)"):
        ClusterConfig.model_validate({"parallel": {"tp": 2, "pp": 2}, "topology": {"devices_per_node": 2}})


def test_a_default_topology_is_left_out_of_the_resolved_config_and_a_set_one_round_trips() -> None:
    assert "topology" not in ClusterConfig().model_dump(mode="json")
    custom = ClusterConfig.model_validate({"topology": {"intra_node": {"gbps": 100, "latency_us": 2}}})
    dumped = custom.model_dump(mode="json")
    assert dumped["topology"]["intra_node"] == {"gbps": 100.0, "latency_us": 2.0}
    assert ClusterConfig.model_validate(dumped) == custom

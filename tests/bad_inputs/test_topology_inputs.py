"""A bad `cluster.topology`: exit 2, one paragraph naming the key and the fix, nothing written."""
import pytest

from tests.bad_inputs.harness import assert_run_refused
from tests.bad_inputs.test_cost_table_selection import BASE


@pytest.mark.parametrize("cluster, fragments", [
    ({"topology": {"intra_node": {"gbps": 0}}}, ["cluster.topology.intra_node.gbps", "greater than 0"]),
    ({"topology": {"inter_node": {"gbps": -50}}}, ["cluster.topology.inter_node.gbps", "greater than 0"]),
    ({"topology": {"inter_node": {"latency_us": -1}}}, ["cluster.topology.inter_node.latency_us"]),
    ({"topology": {"devices_per_node": 0}}, ["cluster.topology.devices_per_node"]),
    ({"parallel": {"tp": 4, "pp": 2}, "topology": {"devices_per_node": 4}},
     ["cluster.topology.devices_per_node", "tp 4 x pp 2 (8 devices)", "at least 8"]),
    ({"topology": {"nodes": 2}}, ["cluster.topology.nodes"]),
])
def test_a_bad_topology_exits_2_naming_the_key(tmp_path, capsys, cluster, fragments):
    assert_run_refused(tmp_path, capsys, {**BASE, "cluster": cluster}, fragments)

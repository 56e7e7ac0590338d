"""A bad `cluster.topology.host` link: exit 2, one paragraph naming the key, nothing written."""
import pytest

from tests.bad_inputs.harness import assert_run_refused
from tests.bad_inputs.test_cost_table_selection import BASE


@pytest.mark.parametrize("host, fragments", [
    ({"gbps": 0}, ["cluster.topology.host.gbps", "greater than 0"]),
    ({"gbps": -16}, ["cluster.topology.host.gbps", "greater than 0"]),
    ({"latency_us": -1}, ["cluster.topology.host.latency_us", "greater than or equal to 0"]),
    ({"bandwidth": 16}, ["cluster.topology.host.bandwidth"]),
])
def test_a_bad_host_link_exits_2_naming_the_key(tmp_path, capsys, host, fragments):
    assert_run_refused(tmp_path, capsys, {**BASE, "cluster": {"topology": {"host": host}}}, fragments)

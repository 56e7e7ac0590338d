"""The network's summary block and links.parquet."""
import pandas as pd
import pytest

from servesim.sim.network import link_series, network_summary, write_link_series
from tests.sim.network.test_network import GB, make_network


def test_summary_gives_totals_and_per_link_bytes_busy_share_and_peak(tmp_path) -> None:
    env, network = make_network()
    network.send([0], [1], GB)
    env.run(until=4.0)
    summary = network_summary(network)
    assert (summary["bytes_sent"], summary["bytes_received"], summary["num_transfers"]) == (GB, GB, 1)
    assert summary["bytes_by_tag"] == {"kv": GB}
    assert set(summary["links"]) == {"node0/dev0/fabric/out", "node0/dev1/fabric/in"}
    port = summary["links"]["node0/dev0/fabric/out"]
    assert port["bytes"] == GB
    assert port["busy_share"] == pytest.approx(1.0 / 4.0)
    assert port["peak_utilisation"] == 1.0


def test_link_series_round_trips_through_parquet(tmp_path) -> None:
    env, network = make_network()
    network.send([0], [1], GB)
    network.send([0], [9], GB)
    env.run()
    path = tmp_path / "links.parquet"
    write_link_series(network, path)
    table = pd.read_parquet(path)
    assert list(table.columns) == ["time_s", "link", "direction", "utilisation", "flows"]
    pd.testing.assert_frame_equal(table, link_series(network))
    nic = table[table.link == "node1/dev9/nic"]
    assert nic.utilisation.tolist() == [1.0, 0.0] and nic.time_s.iloc[1] == pytest.approx(2.0)

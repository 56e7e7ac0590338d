"""KV swapping over the network's host ports: a run with a network moves its swaps as flows, which
show in `links.parquet` and the summary's network block; one without keeps the priced copies."""
from __future__ import annotations

import pytest

from servesim.sim.experiment.config import ExperimentConfig
from servesim.sim.runner import run_experiment

MIB = 2**20
# llama-3.1-8b: 128 KiB of KV per token; a 16-token block is 2 MiB, 1 MiB on each device at tp 2
BLOCK_BYTES_PER_DEVICE = MIB

SWAPPING = {
    "name": "swaps", "model": "llama-3.1-8b", "hardware": "h100-sxm", "seed": 1,
    "workload": {"arrival": {"process": "poisson", "rate": 50.0}, "num_requests": 40,
                 "prompt_tokens": {"dist": "fixed", "value": 300}, "output_tokens": {"dist": "fixed", "value": 200}},
    "memory": {"num_kv_blocks": 80}, "preemption": {"name": "swap"},
    "cost_model": {"kind": "roofline"}, "output": {"plots": False},
}


def run(topology: dict | None):
    cluster = {"parallel": {"tp": 2}, **({"topology": topology} if topology is not None else {})}
    return run_experiment(ExperimentConfig.model_validate({**SWAPPING, "cluster": cluster}))


@pytest.fixture(scope="module")
def over_the_network():
    return run({"host": {"gbps": 8}})


def test_a_swap_heavy_run_shows_its_swaps_on_the_host_ports(over_the_network) -> None:
    summary = over_the_network.summary
    assert summary["cache"]["num_swaps"] > 10
    network = summary["network"]
    links = network["links"]
    assert sorted(links) == ["node0/dev0/host/in", "node0/dev0/host/out", "node0/dev1/host/in", "node0/dev1/host/out"]
    per_port = {link["bytes"] for link in links.values()}
    assert len(per_port) == 1  # each rank its shard; everything swapped out came back in
    (port_bytes,) = per_port
    assert port_bytes % BLOCK_BYTES_PER_DEVICE == 0 and port_bytes > 0
    assert network["bytes_by_tag"] == {"swap": 4 * port_bytes}
    assert network["bytes_sent"] == network["bytes_received"] == 4 * port_bytes
    assert all(link["peak_utilisation"] == pytest.approx(1.0) for link in links.values())
    series = over_the_network.table("links")
    assert set(series["link"]) == {"node0/dev0/host", "node0/dev1/host"}
    busy = series[series["flows"] > 0]
    assert len(busy) and (busy["utilisation"] <= 1.0 + 1e-9).all()


def test_a_slower_host_link_makes_swapping_requests_slower(over_the_network) -> None:
    fast = run({"host": {"gbps": 64}})
    assert fast.summary["e2e_s"]["mean"] < over_the_network.summary["e2e_s"]["mean"]
    assert fast.summary["network"]["links"]["node0/dev0/host/out"]["busy_share"] < \
        over_the_network.summary["network"]["links"]["node0/dev0/host/out"]["busy_share"]


def test_swaps_over_an_idle_port_without_latency_take_what_the_priced_copies_take() -> None:
    priced = run(None)
    flows = run({"host": {"latency_us": 0}})
    assert "network" not in priced.summary
    assert flows.summary["cache"]["num_swaps"] == priced.summary["cache"]["num_swaps"] > 0
    for key in ("e2e_s", "ttft_s", "tpot_s"):
        assert flows.summary[key]["mean"] == pytest.approx(priced.summary[key]["mean"], rel=1e-12)
    assert flows.summary["sim_time_s"] == pytest.approx(priced.summary["sim_time_s"], rel=1e-12)


@pytest.mark.parametrize("extra", [
    pytest.param({"engine": {"intra_gpu_split": {"name": "static", "prefill_share": 0.5}}}, id="intra-gpu loops"),
    pytest.param({"scheduler": {"name": "flowprefill"}}, id="interruptible iterations"),
    pytest.param({"model": "qwen3-30b-a3b", "memory": {"num_kv_blocks": 300},
                  "cluster": {"replicas": 2, "parallel": {"tp": 1, "ep_across_replicas": True}}}, id="dp lockstep"),
    pytest.param({"memory": {"num_kv_blocks": 100}, "cluster": {"pools": [
        {"name": "p", "role": "prefill", "replicas": 1}, {"name": "d", "role": "decode", "replicas": 1}]}},
        id="disaggregated"),
])
def test_every_engine_path_moves_its_swaps_over_the_host_ports(extra) -> None:
    cluster = {"topology": {"host": {"gbps": 8}}, **extra.get("cluster", {})}
    result = run_experiment(ExperimentConfig.model_validate({**SWAPPING, **extra, "cluster": cluster}))
    summary = result.summary
    assert summary["num_finished"] == SWAPPING["workload"]["num_requests"]
    assert summary["cache"]["num_swaps"] > 0
    network = summary["network"]
    host = {name: link["bytes"] for name, link in network["links"].items() if "/host/" in name}
    assert network["bytes_by_tag"]["swap"] == sum(host.values()) > 0
    assert sum(b for name, b in host.items() if name.endswith("/out")) == \
        sum(b for name, b in host.items() if name.endswith("/in"))
    assert network["bytes_sent"] == network["bytes_received"]

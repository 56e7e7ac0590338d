"""EP all-to-all: inside a node on the intra-node link, across nodes on each device's inter-node link."""
import dataclasses

import pytest

from servesim.hwmodels import BatchShape, ParallelPlan, RooflineCostModel, load_hardware, load_model
from servesim.hwmodels.expert_parallel import DataParallelExpertCostModel

MODEL = load_model("qwen3-30b-a3b")
H100 = load_hardware("h100-sxm")
BATCH = BatchShape((4096,), (0,))


def all_to_all_s(hardware, ep):
    model = RooflineCostModel(MODEL, hardware, ParallelPlan(tp=ep, ep=ep))
    return model.breakdown(BATCH).by_operator()["ep_all_to_all"]


def test_an_ep_group_beyond_one_node_pays_the_slower_inter_node_link():
    one_domain = dataclasses.replace(H100, devices_per_node=16)  # 16 devices on one NVLink domain
    assert all_to_all_s(H100, 16) > 2 * all_to_all_s(one_domain, 16)


def test_across_nodes_the_slower_share_sets_the_time():
    ep, per_node = 16, H100.devices_per_node
    nbytes = 4096 * MODEL.experts_per_token * MODEL.hidden_size * 2 / ep  # per device, per all-to-all
    intra = (per_node - 1) / ep * nbytes / H100.collective_bytes_per_s(per_node)
    inter = (ep - per_node) / ep * nbytes / (H100.inter_node_link_gbps * 1e9)
    latency = (per_node - 1) * H100.link_latency_us * 1e-6 + (ep - per_node) * H100.inter_node_latency_us * 1e-6
    calls = 2 * MODEL.num_moe_layers  # dispatch and combine in every MoE layer
    assert all_to_all_s(H100, ep) == pytest.approx(calls * (max(intra, inter) + latency))


def test_a_faster_inter_node_link_makes_the_exchange_faster_but_never_below_the_node():
    fast = dataclasses.replace(H100, inter_node_link_gbps=400.0)
    assert all_to_all_s(fast, 16) < all_to_all_s(H100, 16)
    assert all_to_all_s(H100, 8) == pytest.approx(all_to_all_s(dataclasses.replace(H100, inter_node_link_gbps=1.0), 8))


def test_data_parallel_experts_over_two_nodes_exchange_over_the_network():
    """DP x EP over 4 replicas of TP 4 (16 devices, two H100 nodes) against the same 16 on one domain."""
    def exchange_s(hardware):
        local = RooflineCostModel(MODEL, hardware, ParallelPlan(tp=4))
        experts = RooflineCostModel(MODEL, hardware, ParallelPlan(tp=16, ep=16))
        split = DataParallelExpertCostModel(local, experts, 4, 16, MODEL.experts_per_token)
        return split.breakdown(BatchShape((1024,), (0,))).by_operator()["ep_all_to_all"]
    assert exchange_s(H100) > 2 * exchange_s(dataclasses.replace(H100, devices_per_node=16))


def test_the_dp_ep_group_crosses_nodes_by_the_configured_topology():
    from servesim.sim.experiment.config import ExperimentConfig
    from servesim.sim.runner import run_experiment

    def ttft(topology):
        return run_experiment(ExperimentConfig.model_validate({
            "model": "qwen3-30b-a3b", "cost_model": {"kind": "roofline"},
            "cluster": {"replicas": 2, "parallel": {"tp": 4, "ep_across_replicas": True}, "topology": topology},
            "workload": {"arrival": {"process": "poisson", "rate": 2.0},
                         "prompt_tokens": {"dist": "fixed", "value": 4096},
                         "output_tokens": {"dist": "fixed", "value": 8}, "num_requests": 6},
            "output": {"plots": False}})).summary["ttft_s"]["mean"]
    one_node = ttft({})
    two_nodes = ttft({"devices_per_node": 4})
    assert two_nodes > one_node
    assert ttft({"devices_per_node": 4, "inter_node": {"gbps": 5.0}}) > two_nodes

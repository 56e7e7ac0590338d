"""MoE runs end to end: the summary's `moe` block, offloading's memory and hit rate, determinism."""
import pytest

from servesim.sim.experiment.config import ExperimentConfig
from servesim.sim.runner import prepare, run_experiment


def config(model="qwen3-30b-a3b", moe=None, scheduler=None, parallel=None, **workload):
    cost_model = {"kind": "roofline", **({"moe": moe} if moe is not None else {})}
    return ExperimentConfig.model_validate({
        "model": model, "hardware": "h100-sxm", "cost_model": cost_model,
        "cluster": {"parallel": parallel or {"tp": 1}},
        "scheduler": scheduler or {"name": "vllm"},
        "workload": {"arrival": {"process": "poisson", "rate": 4.0},
                     "prompt_tokens": {"dist": "fixed", "value": workload.get("prompt", 512)},
                     "output_tokens": {"dist": "fixed", "value": 32}, "num_requests": workload.get("n", 20)},
        "output": {"plots": False},
    })


def summary(**kwargs):
    return run_experiment(config(**kwargs)).summary


def test_a_moe_run_reports_the_expert_weights_it_read():
    moe = summary()["moe"]
    assert moe["routing"] == "uniform"
    assert moe["expert_weight_bytes_read"] > 0 and "offload" not in moe


def test_a_dense_run_has_no_moe_block():
    assert "moe" not in summary(model="llama-3.1-8b")


def test_offloaded_experts_free_device_memory_for_kv():
    resident = prepare(config()).capacity
    offloaded = prepare(config(moe={"offload": {"gpu_experts": 32}})).capacity
    assert offloaded.num_blocks > 1.5 * resident.num_blocks
    assert resident.weight_bytes - offloaded.weight_bytes == pytest.approx(
        48 * 96 * 3 * 2048 * 768 * 2, rel=1e-9)  # 96 experts of 48 layers in bf16


def test_offload_reports_hit_rate_and_bytes_loaded_and_locality_raises_the_hit_rate():
    rates = []
    for locality in (0.0, 0.5, 0.9):
        block = summary(moe={"offload": {"gpu_experts": 64}, "locality": locality})["moe"]["offload"]
        assert block["expert_bytes_loaded"] > 0
        rates.append(block["hit_rate"])
    assert rates == sorted(rates) and rates[-1] > rates[0] + 0.1


def test_offloading_costs_time_on_the_host_link():
    resident = summary()["tpot_s"]["mean"]
    offloaded = summary(moe={"offload": {"gpu_experts": 32}})["tpot_s"]["mean"]
    assert offloaded > 2 * resident


def test_skewed_routing_over_ep_ranks_slows_long_prompts():
    uniform = summary(parallel={"tp": 8, "ep": 8}, prompt=8192, n=5)["ttft_s"]["mean"]
    skewed = summary(parallel={"tp": 8, "ep": 8}, prompt=8192, n=5, moe={"routing": "zipf", "zipf_s": 1.2})
    assert skewed["ttft_s"]["mean"] > uniform
    assert skewed["run"]["cost_model"]["moe_routing"]["rank_imbalance"] > 1.2


def test_a_moe_run_repeats_exactly():
    moe = {"routing": "zipf", "zipf_s": 1.0, "seed": 4, "locality": 0.3, "offload": {"gpu_experts": 48}}
    first, second = summary(moe=moe), summary(moe=moe)
    assert first["moe"] == second["moe"]
    assert first["ttft_s"] == second["ttft_s"]


def test_the_traffic_meter_counts_fast_forwarded_stretches_as_stepping_does():
    stepped_config = config()
    stepped_config.simulation.fast_forward = False
    stepped = run_experiment(stepped_config).summary
    forwarded = summary()
    assert forwarded["moe"]["expert_reads"] == pytest.approx(stepped["moe"]["expert_reads"], rel=1e-9)


def test_a_placement_for_the_dp_ep_group_crowding_one_rank_slows_prefills():
    def ttft(moe):
        cfg = config(moe=moe, parallel={"tp": 2, "ep_across_replicas": True}, prompt=4096, n=6)
        cfg.cluster.replicas = 2
        return run_experiment(cfg).summary["ttft_s"]["mean"]
    crowded = [0] * 64 + [1, 2, 3] * 21 + [1]
    assert ttft({"placement": crowded}) > ttft({})


def test_the_headline_says_the_roofline_prices_the_routing():
    from servesim.sim.reporting.headline import headline
    assert "experts priced for zipf(s=1.2, seed=0) routing" in headline(summary(moe={"routing": "zipf"}, n=3))


def test_a_config_without_moe_resolves_and_hashes_as_before_the_key_existed():
    assert "moe" not in config().model_dump(mode="json")["cost_model"]
    assert config(moe={"routing": "zipf"}).model_dump(mode="json")["cost_model"]["moe"]["routing"] == "zipf"

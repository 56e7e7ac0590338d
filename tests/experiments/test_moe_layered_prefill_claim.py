"""Layered prefill against chunked prefill on a MoE model, as experiments/moe_layered_prefill.yaml runs it
(shrunk to 120 requests): lower TTFT, and fewer bytes of expert weights read."""
from servesim.sim.experiment.loading import load_config, variant_configs
from servesim.sim.experiment.variants import check_claim
from servesim.sim.runner import prepare, simulate
from tests.experiments.claims import EXPERIMENTS


def test_layered_prefill_beats_chunked_on_ttft_and_expert_weight_traffic():
    config, base_dir = load_config(EXPERIMENTS / "moe_layered_prefill.yaml", ["workload.num_requests=120"])
    summaries = {name: simulate(prepare(variant, base_dir)).summary
                 for name, variant in variant_configs(config).items()}
    assert config.claim is not None
    assert check_claim(config.claim, summaries)["holds"]
    layered, chunked = summaries["layered"], summaries["chunked"]
    assert layered["ttft_s"]["p99"] < chunked["ttft_s"]["p99"]
    assert layered["moe"]["expert_weight_bytes_read"] < 0.95 * chunked["moe"]["expert_weight_bytes_read"]
    assert layered["num_finished"] == chunked["num_finished"] == 120

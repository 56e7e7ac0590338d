"""The bandwidth below which disaggregation stops paying (experiments/disagg_bandwidth.yaml, shrunk):
a Llama-3.1-70B TP4 prefill + TP4 decode pair beats two unified TP4 replicas on the same GPUs when
the KV moves over NVLink, and loses to them when it crawls over 1 GB/s."""
from servesim.sim.experiment.loading import load_config, variant_configs
from servesim.sim.runner import prepare, simulate
from tests.experiments.claims import EXPERIMENTS, run_claim

SHRUNK = ["workload.num_requests=150", "workload.arrival.rate=4.5"]


def attainment(variants: tuple[str, ...]) -> dict[str, float]:
    config, base_dir = load_config(EXPERIMENTS / "disagg_bandwidth.yaml", SHRUNK)
    configs = variant_configs(config)
    return {name: simulate(prepare(configs[name], base_dir)).summary["slo"]["attainment"] for name in variants}


def test_disaggregation_over_nvlink_beats_the_unified_plan_and_the_slow_link():
    verdict = run_claim("disagg_bandwidth", SHRUNK)
    assert verdict["holds"], verdict


def test_attainment_falls_as_the_link_slows_and_drops_below_the_unified_plan_at_1_gbps():
    measured = attainment(("unified_tp4x2", "disagg_nvlink", "disagg_5gbps", "disagg_1gbps"))
    assert measured["disagg_nvlink"] >= measured["disagg_5gbps"] > measured["disagg_1gbps"], measured
    assert measured["disagg_1gbps"] < measured["unified_tp4x2"] < measured["disagg_nvlink"], measured

"""Cache-aware routing's claim on a shrunk version of experiments/routing.yaml: prefix_affinity
has the highest prefix-cache hit rate and the lowest mean TTFT of the routers."""
from servesim.sim.experiment.loading import load_config, variant_configs
from servesim.sim.experiment.variants import check_claim
from servesim.sim.runner import prepare, simulate
from tests.experiments.claims import EXPERIMENTS

# A fifth of the requests and documents, and a KV pool cut to keep the documents' ratio to it:
# every document still outgrows one replica's cache, a quarter of them does not.
SHRUNK = ["workload.num_requests=600", "workload.shared_prefix.num_groups=40", "memory.num_kv_blocks=5000"]


def test_prefix_affinity_hits_the_cache_more_and_answers_sooner_than_load_only_routers():
    config, base_dir = load_config(EXPERIMENTS / "routing.yaml", SHRUNK)
    summaries = {name: simulate(prepare(variant, base_dir)).summary
                 for name, variant in variant_configs(config).items()}
    verdict = check_claim(config.claim, summaries)
    assert verdict["holds"], verdict
    hit_rates = {name: summary["cache"]["hit_rate"] for name, summary in summaries.items()}
    others = [rate for name, rate in hit_rates.items() if name != "prefix_affinity"]
    assert hit_rates["prefix_affinity"] > max(others), hit_rates

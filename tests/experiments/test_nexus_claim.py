"""Nexus's claim on a small workload: the intra-GPU split beats chunked prefill on TBT at equal throughput."""
import pytest

from servesim.sim.experiment.loading import load_config, variant_configs
from servesim.sim.experiment.variants import check_claim
from servesim.sim.runner import prepare, simulate
from tests.experiments.claims import EXPERIMENTS

SMALL = ["workload.num_requests=200"]


@pytest.fixture(scope="module")
def summaries():
    config, base_dir = load_config(EXPERIMENTS / "nexus.yaml", SMALL)
    return config, {name: simulate(prepare(variant, base_dir)).summary
                    for name, variant in variant_configs(config).items()}


def test_the_split_beats_chunked_prefill_on_tail_tbt(summaries):
    config, by_variant = summaries
    verdict = check_claim(config.claim, by_variant)
    assert verdict["holds"], verdict
    assert by_variant["static_split"]["tbt_s"]["p99"] < by_variant["chunked"]["tbt_s"]["p99"]


def test_at_equal_throughput_with_every_request_served(summaries):
    _, by_variant = summaries
    chunked = by_variant["chunked"]["throughput"]["output_tokens_per_s"]
    for summary in by_variant.values():
        assert summary["num_finished"] == summary["num_requests"] == 200
        assert summary["throughput"]["output_tokens_per_s"] == pytest.approx(chunked, rel=0.02)


def test_the_splits_report_their_partition(summaries):
    _, by_variant = summaries
    static, proactive = by_variant["static_split"]["intra_gpu"], by_variant["proactive_split"]["intra_gpu"]
    assert static["mean_prefill_share"] == pytest.approx(0.6) and static["num_repartitions"] == 1
    assert proactive["num_repartitions"] > 1 and proactive["both_busy_s"] > 0
    assert "intra_gpu" not in by_variant["chunked"]

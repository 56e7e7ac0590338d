"""Layerwise KV transfer's claim on a shrunk version of experiments/disaggregation.yaml."""
from tests.experiments.claims import run_claim


def test_layerwise_transfer_has_lower_ttft_than_transfer_after_prefill():
    verdict = run_claim("disaggregation", ["workload.num_requests=40"])
    assert verdict["holds"], verdict

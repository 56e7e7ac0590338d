"""Past-Future's headline claim on a shrunk version of experiments/past_future.yaml."""
from tests.experiments.claims import run_claim


def test_past_future_has_higher_goodput_than_aggressive_and_conservative_admission():
    # 600 of the 1,000 requests at the same heavy load: long enough for the KV pool to fill.
    verdict = run_claim("past_future", ["workload.num_requests=600"])
    assert verdict["holds"], verdict

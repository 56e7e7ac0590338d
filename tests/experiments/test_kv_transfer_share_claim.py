"""The KV transfer's share of TTFT falls with the link's bandwidth (experiments/kv_transfer_share.yaml, shrunk)."""
from tests.experiments.claims import run_claim


def test_the_kv_transfer_is_a_smaller_share_of_ttft_over_nvlink_than_over_400_and_100_gbps():
    verdict = run_claim("kv_transfer_share", ["workload.num_requests=30"])
    assert verdict["holds"], verdict

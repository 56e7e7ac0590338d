"""BatchLLM's headline claim on a shrunk version of experiments/batchllm.yaml."""
from tests.experiments.claims import run_claim


def test_batchllm_has_higher_offline_throughput_than_vllm_with_prefix_caching():
    # A quarter of everything: requests, documents and KV pool, so documents still outgrow the pool.
    verdict = run_claim(
        "batchllm", ["workload.num_requests=1000", "workload.shared_prefix.num_groups=125", "memory.num_kv_blocks=7000"]
    )
    assert verdict["holds"], verdict

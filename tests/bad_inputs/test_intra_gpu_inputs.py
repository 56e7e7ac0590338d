"""A bad `engine.intra_gpu_split`: exit 2, one paragraph naming the key and the fix, nothing written."""
import pytest

from tests.bad_inputs.harness import assert_run_refused

BASE = {
    "name": "split",
    "model": "llama-3.1-8b",
    "hardware": "h100-sxm",
    "workload": {"arrival": {"process": "poisson", "rate": 2.0}, "num_requests": 5,
                 "prompt_tokens": {"dist": "fixed", "value": 100}, "output_tokens": {"dist": "fixed", "value": 5}},
    "output": {"plots": False},
}


@pytest.mark.parametrize("changes, fragments", [
    ({"engine": {"intra_gpu_split": {"name": "nexus"}}},
     ["engine.intra_gpu_split", "unknown split policy 'nexus'", "proactive", "static"]),
    ({"engine": {"intra_gpu_split": {"name": "static", "prefill_share": 1.5}}},
     ["engine.intra_gpu_split", "prefill_share"]),
    ({"engine": {"intra_gpu_split": {"name": "proactive", "ttft_budget": 1}}},
     ["engine.intra_gpu_split", "ttft_budget", "did you mean 'ttft_budget_s'"]),
    ({"engine": {"intra_gpu_split": {"prefill_share": 0.6}}}, ["engine.intra_gpu_split.name"]),
    ({"engine": {"intra_gpu_split": {"name": "static", "bandwidth_saturation_share": 0}}},
     ["engine.intra_gpu_split.bandwidth_saturation_share"]),
    ({"engine": {"intra_gpu_split": {"name": "static"}}, "scheduler": {"name": "flowprefill"}},
     ["engine.intra_gpu_split", "flowprefill", "interrupts iterations"]),
    ({"engine": {"intra_gpu_split": {"name": "static"}},
      "cluster": {"replicas": 2, "parallel": {"ep_across_replicas": True}}},
     ["engine.intra_gpu_split", "ep_across_replicas"]),
])
def test_a_bad_split_exits_2_before_simulating(tmp_path, capsys, changes, fragments):
    assert_run_refused(tmp_path, capsys, {**BASE, **changes}, fragments)

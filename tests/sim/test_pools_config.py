"""`cluster.pools` resolves to pools whose unset keys come from the top-level sections."""
from __future__ import annotations

from servesim.sim.experiment.loading import validate_config
from servesim.sim.experiment.pools import is_disaggregated, resolved_pools

WORKLOAD = {"arrival": {"rate": 1.0}, "prompt_tokens": {"dist": "fixed", "value": 64},
            "output_tokens": {"dist": "fixed", "value": 4}, "num_requests": 3}


def test_a_config_without_pools_is_one_unified_pool_named_default() -> None:
    config = validate_config({"workload": WORKLOAD, "hardware": "a100-80g",
                              "cluster": {"replicas": 3, "parallel": {"tp": 2}}})
    (pool,) = resolved_pools(config)
    assert (pool.name, pool.role, pool.replicas, pool.hardware, pool.parallel.tp) == ("default", "unified", 3,
                                                                                      "a100-80g", 2)
    assert pool.scheduler is config.scheduler and pool.memory is config.memory and pool.is_entry
    assert not is_disaggregated(config)


def test_a_pool_takes_the_top_level_hardware_scheduler_and_memory_key_by_key() -> None:
    config = validate_config({
        "workload": WORKLOAD, "hardware": "h100-sxm",
        "scheduler": {"name": "sarathi", "max_num_batched_tokens": 512},
        "memory": {"block_size": 32, "gpu_memory_utilization": 0.8},
        "cluster": {"pools": [
            {"name": "p", "role": "prefill", "replicas": 2, "parallel": {"tp": 2}},
            {"name": "d", "role": "decode", "hardware": "a100-80g", "scheduler": {"name": "vllm"},
             "memory": {"gpu_memory_utilization": 0.95}},
        ]},
    })
    prefill, decode = resolved_pools(config)
    assert (prefill.hardware, prefill.parallel.tp, prefill.replicas, prefill.scheduler.name) == ("h100-sxm", 2, 2,
                                                                                               "sarathi")
    assert prefill.memory.block_size == 32 and prefill.memory.gpu_memory_utilization == 0.8
    assert (decode.hardware, decode.parallel.tp, decode.replicas, decode.scheduler.name) == ("a100-80g", 1, 1, "vllm")
    assert decode.memory.block_size == 32 and decode.memory.gpu_memory_utilization == 0.95
    assert prefill.is_entry and not decode.is_entry
    assert is_disaggregated(config)
    assert config.cluster.transfer.name == "after_prefill"


def test_unified_pools_of_different_hardware_need_no_transfer() -> None:
    config = validate_config({"workload": WORKLOAD, "cluster": {"pools": [
        {"name": "fast", "hardware": "h100-sxm"}, {"name": "cheap", "hardware": "l40s", "replicas": 2}]}})
    assert [p.role for p in resolved_pools(config)] == ["unified", "unified"]
    assert not is_disaggregated(config)

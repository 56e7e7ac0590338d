import pytest

from servesim.hwmodels import ParallelPlan
from servesim.hwmodels.catalog import load_hardware, load_model
from servesim.sim.experiment.capacity import GIB, kv_capacity
from servesim.sim.experiment.config import MemoryConfig
from servesim.sim.errors import ConfigError


def test_llama_8b_on_h100_leaves_the_expected_kv_pool():
    model, gpu = load_model("llama-3.1-8b"), load_hardware("h100-sxm")
    cap = kv_capacity(model, gpu, ParallelPlan(), MemoryConfig(), 8192, 256)
    assert cap.budget_bytes == int(80 * GIB * 0.9)
    free = cap.budget_bytes - cap.weight_bytes - cap.activation_bytes - cap.overhead_bytes
    assert cap.num_blocks == free // (16 * 131072)
    assert cap.kv_bytes <= free < cap.kv_bytes + 16 * 131072


def test_tensor_parallelism_halves_weights_and_kv_per_device():
    model, gpu = load_model("llama-2-70b"), load_hardware("a100-80g")
    two = kv_capacity(model, gpu, ParallelPlan(tp=2), MemoryConfig(), 512, 256)
    four = kv_capacity(model, gpu, ParallelPlan(tp=4), MemoryConfig(), 512, 256)
    assert four.weight_bytes == pytest.approx(two.weight_bytes / 2, rel=0.01)
    assert four.kv_bytes_per_token == two.kv_bytes_per_token // 2
    assert four.num_blocks > 2 * two.num_blocks


def test_a_model_that_does_not_fit_is_a_config_error():
    with pytest.raises(ConfigError, match="does not fit on a100-80g"):
        kv_capacity(load_model("llama-2-70b"), load_hardware("a100-80g"), ParallelPlan(), MemoryConfig(), 512, 256)


def test_fixed_block_count_overrides_the_memory_model():
    cap = kv_capacity(load_model("llama-3.1-8b"), load_hardware("h100-sxm"), ParallelPlan(), MemoryConfig(num_kv_blocks=7), 512, 8)
    assert cap.num_blocks == 7

import pytest

from servesim.hwmodels import ParallelPlan
from servesim.hwmodels.catalog import load_hardware, load_model
from servesim.sim.errors import ConfigError
from servesim.sim.experiment.capacity import GIB, MAX_POOL_BLOCKS, check_pool_blocks, kv_capacity, model_len
from servesim.sim.experiment.config import MemoryConfig


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
    cap = kv_capacity(load_model("llama-3.1-8b"), load_hardware("h100-sxm"), ParallelPlan(),
                      MemoryConfig(num_kv_blocks=7), 512, 8)
    assert cap.num_blocks == 7


LLAMA, H100 = load_model("llama-3.1-8b"), load_hardware("h100-sxm")


def capacity(**memory):
    return kv_capacity(LLAMA, H100, ParallelPlan(), MemoryConfig(**memory), 8192, 256)


def test_swap_blocks_follow_the_swap_space():
    cap = capacity(swap_space_gib=4)
    assert cap.swap_blocks == 4 * GIB // cap.block_bytes
    assert capacity(swap_space_gib=0).swap_blocks == 0


def test_a_swap_space_beyond_a_servers_host_memory_is_refused_with_the_bound():
    with pytest.raises(ConfigError, match=r"memory.swap_space_gib: .*8,000 GiB of host memory.*at most 512 GiB"):
        capacity(swap_space_gib=1000)
    assert capacity(swap_space_gib=512).swap_blocks > 0


def test_a_fixed_pool_beyond_the_device_memory_is_refused_with_the_bound():
    fits = int(80 * GIB * 0.9) // (16 * LLAMA.kv_bytes_per_token)
    assert capacity(num_kv_blocks=fits).num_blocks == fits
    with pytest.raises(ConfigError, match=f"memory.num_kv_blocks: .*at most {fits:,} blocks"):
        capacity(num_kv_blocks=fits + 1)


def test_a_block_larger_than_the_free_memory_names_the_largest_that_fits():
    with pytest.raises(ConfigError, match=r"memory.block_size: .*the largest block that fits holds [\d,]+ tokens"):
        capacity(block_size=10**9)


@pytest.mark.parametrize("overhead", [80.0, 1e300])
def test_an_overhead_of_the_whole_device_is_refused_without_overflow(overhead):
    with pytest.raises(ConfigError, match="memory.overhead_gib"):
        capacity(overhead_gib=overhead)


def test_activations_beyond_the_device_name_the_scheduler_limits():
    with pytest.raises(ConfigError, match="max_num_seqs=1,000,000,000"):
        kv_capacity(LLAMA, H100, ParallelPlan(), MemoryConfig(), 8192, 10**9)


def test_the_engine_pools_of_all_replicas_are_bounded():
    cap = capacity(num_kv_blocks=10_000)
    check_pool_blocks(cap, replicas=100)
    with pytest.raises(ConfigError, match=r"cluster.replicas"):
        check_pool_blocks(cap, replicas=(MAX_POOL_BLOCKS // (10_000 + cap.swap_blocks)) + 1)


def test_max_model_len_defaults_to_and_may_not_exceed_the_context():
    assert model_len(MemoryConfig(), LLAMA) == LLAMA.max_position_embeddings
    assert model_len(MemoryConfig(max_model_len=4096), LLAMA) == 4096
    with pytest.raises(ConfigError, match="memory.max_model_len: 131,073 is longer than the 131,072-token context"):
        model_len(MemoryConfig(max_model_len=131_073), LLAMA)

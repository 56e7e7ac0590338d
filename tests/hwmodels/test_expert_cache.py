"""Expert offloading: the LRU expert cache's expected misses, and what they cost."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.hwmodels import BatchShape, ParallelPlan, RooflineCostModel, load_hardware, load_model
from servesim.hwmodels.expert_cache import ExpertCacheEstimate, che_resident_probability
from servesim.hwmodels.expert_traffic import ExpertTraffic
from servesim.hwmodels.moe_routing import ExpertRouting, round_robin, uniform_popularity, zipf_popularity

MODEL = load_model("qwen3-30b-a3b")


def routing(popularity):
    return ExpertRouting(popularity, round_robin(128, 1), MODEL.experts_per_token, 1, "test")


def hit_rate(cache, tokens):
    return 1.0 - cache.misses(tokens) / cache.routing.touched(tokens)


@settings(max_examples=30)
@given(st.floats(0.0, 0.95), st.floats(0.01, 0.05), st.integers(8, 120), st.sampled_from([1, 4, 16, 64]),
       st.floats(0.0, 1.5))
def test_the_hit_rate_rises_with_routing_locality(locality, step, resident, tokens, skew):
    popularity = zipf_popularity(128, skew, np.random.default_rng(0))
    lower = ExpertCacheEstimate(routing(popularity), resident, locality)
    higher = ExpertCacheEstimate(routing(popularity), resident, locality + step)
    assert hit_rate(higher, tokens) >= hit_rate(lower, tokens) - 1e-12


def test_more_resident_experts_miss_less():
    popularity = zipf_popularity(128, 1.0, np.random.default_rng(0))
    misses = [ExpertCacheEstimate(routing(popularity), k, 0.3).misses(16) for k in (16, 32, 64, 112)]
    assert misses == sorted(misses, reverse=True)


def test_a_batch_touching_more_experts_than_resident_misses_at_least_the_excess():
    cache = ExpertCacheEstimate(routing(uniform_popularity(128)), 32, locality=1.0)
    assert cache.misses(4096) == pytest.approx(cache.routing.touched(4096) - 32)


@pytest.mark.parametrize("resident", [1, 10, 64, 127])
def test_che_characteristic_time_holds_the_cache_size(resident):
    popularity = zipf_popularity(128, 1.1, np.random.default_rng(1))
    assert che_resident_probability(popularity, resident).sum() == pytest.approx(resident, rel=1e-6)


def test_uniform_popularity_keeps_each_expert_resident_in_proportion():
    held = che_resident_probability(uniform_popularity(128), 32)
    assert held == pytest.approx(np.full((1, 128), 32 / 128))


def test_misses_are_copied_over_the_host_link_before_the_experts_run():
    hardware = load_hardware("h100-sxm")
    cache = ExpertCacheEstimate(routing(uniform_popularity(128)), 32, 0.0)
    resident = RooflineCostModel(MODEL, hardware, ParallelPlan())
    offloaded = RooflineCostModel(MODEL, hardware, ParallelPlan(), routing=cache.routing, cache=cache)
    batch = BatchShape((1,) * 8, (100,) * 8)
    load = offloaded.breakdown(batch).by_operator()["moe_expert_load"]
    expert_bytes = MODEL.layer_params(1).expert * 2  # bf16
    expected = MODEL.num_moe_layers * cache.misses(8) * expert_bytes / (hardware.host_link_gbps * 1e9)
    assert load == pytest.approx(expected)
    assert offloaded.iteration_time(batch) == pytest.approx(resident.iteration_time(batch) + load, rel=1e-9)


def test_traffic_counts_expert_weights_read_and_loaded_per_iteration():
    cache = ExpertCacheEstimate(routing(uniform_popularity(128)), 32, 0.5)
    traffic = ExpertTraffic(MODEL, cache.routing, cache)
    touched, loaded = traffic.of_batch(BatchShape((1,) * 4, (10,) * 4))
    assert touched == pytest.approx(MODEL.num_moe_layers * cache.routing.touched(4))
    assert loaded == pytest.approx(MODEL.num_moe_layers * cache.misses(4))

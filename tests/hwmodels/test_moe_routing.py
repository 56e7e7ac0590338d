"""Routing distributions: per-expert load in closed form, and the most loaded EP rank's time."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.hwmodels import BatchShape, ParallelPlan, RooflineCostModel, load_hardware, load_model
from servesim.hwmodels.moe_routing import (
    ExpertRouting,
    choice_probability,
    popularity_from_counts,
    read_routing_trace,
    round_robin,
    uniform_popularity,
    zipf_popularity,
)

MODEL = load_model("qwen3-30b-a3b")
H100 = load_hardware("h100-sxm")


def routing(popularity, ep, placement=None):
    experts = popularity.shape[-1]
    return ExpertRouting(popularity, round_robin(experts, ep) if placement is None else placement,
                         MODEL.experts_per_token, ep, "test")


def zipf(s, seed=0):
    return zipf_popularity(MODEL.num_experts, s, np.random.default_rng(seed))


def moe_experts_s(ep, popularity, tokens):
    model = RooflineCostModel(MODEL, H100, ParallelPlan(tp=8, ep=ep), routing=routing(popularity, ep))
    return model.breakdown(BatchShape((tokens,), (0,))).by_operator()["moe_experts"]


def test_uniform_round_robin_routing_prices_exactly_as_the_default_model():
    for ep in (1, 2, 8):
        plan = ParallelPlan(tp=8, ep=ep)
        default = RooflineCostModel(MODEL, H100, plan)
        routed = RooflineCostModel(MODEL, H100, plan, routing=routing(uniform_popularity(128), ep))
        for tokens in (1, 7, 256, 8192):
            batch = BatchShape((tokens,), (0,))
            assert routed.iteration_time(batch) == pytest.approx(default.iteration_time(batch), rel=1e-12)


def test_uniform_touched_experts_is_the_closed_form():
    uniform = routing(uniform_popularity(128), 1)
    for tokens in (1, 10, 100):
        assert uniform.touched(tokens) == pytest.approx(128 * (1 - (1 - 8 / 128) ** tokens))


@pytest.mark.parametrize("tokens", [1024, 4096, 16384])
def test_zipf_skew_makes_the_moe_layer_slower_than_uniform_at_the_same_tokens(tokens):
    uniform = moe_experts_s(8, uniform_popularity(128), tokens)
    skewed = moe_experts_s(8, zipf(1.2), tokens)
    assert skewed > 1.1 * uniform


def test_more_skew_loads_the_busiest_rank_more():
    imbalances = [routing(zipf(s), 8).imbalance() for s in (0.2, 0.6, 1.0)]
    assert imbalances == sorted(imbalances)
    assert routing(uniform_popularity(128), 8).imbalance() == pytest.approx(1.0)


def test_small_skewed_batches_touch_fewer_experts_so_read_fewer_weights():
    """The other side of skew: a few decodes concentrate on the popular experts."""
    assert routing(zipf(1.2), 1).touched(8) < routing(uniform_popularity(128), 1).touched(8)


def test_placement_decides_the_busiest_rank():
    popularity = np.array([[0.4, 0.4, 0.1, 0.1]])
    apart = ExpertRouting(popularity, np.array([0, 1, 0, 1]), 1, 2, "apart")
    together = ExpertRouting(popularity, np.array([0, 0, 1, 1]), 1, 2, "together")
    assert apart.max_rank_pairs(100) == pytest.approx(50)
    assert together.max_rank_pairs(100) == pytest.approx(80)


@settings(max_examples=50)
@given(st.lists(st.floats(0.0, 1.0), min_size=8, max_size=64).filter(lambda w: sum(x > 1e-3 for x in w) >= 8),
       st.integers(1, 8))
def test_a_token_picks_exactly_k_experts_each_at_most_once(weights, k):
    popularity = np.array([weights]) / sum(weights)
    choice = choice_probability(popularity, k)
    assert choice.sum() == pytest.approx(k, rel=1e-6)
    assert (choice <= 1.0 + 1e-12).all() and (choice >= 0).all()
    order = np.argsort(popularity[0])
    assert (np.diff(choice[0][order]) >= -1e-9).all()  # more popular, more likely chosen


def test_the_seed_decides_which_experts_are_popular():
    assert not np.array_equal(zipf(1.2, seed=0), zipf(1.2, seed=1))
    assert np.array_equal(zipf(1.2, seed=3), zipf(1.2, seed=3))
    assert np.sort(zipf(1.2, seed=0)) == pytest.approx(np.sort(zipf(1.2, seed=1)))


def test_a_per_layer_trace_gives_each_layer_its_row_and_the_rest_the_sum(tmp_path):
    path = tmp_path / "routing.csv"
    path.write_text("layer,expert,count\n0,0,30\n0,1,10\n1,2,5\n")
    counts = read_routing_trace(str(path), num_experts=4, num_moe_layers=3)
    assert counts.tolist() == [[30, 10, 0, 0], [0, 0, 5, 0], [30, 10, 5, 0]]
    assert popularity_from_counts(counts)[0].tolist() == [0.75, 0.25, 0, 0]


@pytest.mark.parametrize("text, problem", [
    ("expert,count\n0,5\n9,1\n", "row 3"),
    ("expert,count\nzero,5\n", "row 2"),
    ("expert,hits\n0,5\n", "columns"),
    ("", "no rows"),
])
def test_a_bad_trace_names_the_row_or_the_columns(tmp_path, text, problem):
    path = tmp_path / "routing.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=problem):
        read_routing_trace(str(path), num_experts=4, num_moe_layers=2)


def test_the_bundled_sample_trace_is_skewed_per_layer():
    from pathlib import Path
    sample = Path(__file__).resolve().parents[2] / "experiments" / "data" / "moe_routing_sample.csv"
    counts = read_routing_trace(str(sample), MODEL.num_experts, MODEL.num_moe_layers)
    sampled = routing(popularity_from_counts(counts), 8)
    assert sampled.imbalance() > 1.05
    assert len({tuple(row) for row in counts}) > 1

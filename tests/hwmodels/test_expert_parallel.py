"""DP x EP composition: attention on the rank's own batch, MoE experts at EP over all ranks."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.hwmodels import BatchShape, ParallelPlan, RooflineCostModel, load_hardware, load_model
from servesim.hwmodels.expert_parallel import DataParallelExpertCostModel, exchanged_tokens

MODEL = load_model("qwen3-30b-a3b")
GPU = load_hardware("h100-sxm")


def composed(ranks: int = 2) -> tuple[DataParallelExpertCostModel, RooflineCostModel, RooflineCostModel]:
    local = RooflineCostModel(MODEL, GPU, ParallelPlan(tp=1))
    experts = RooflineCostModel(MODEL, GPU, ParallelPlan(tp=ranks, ep=ranks))
    return DataParallelExpertCostModel(local, experts, ranks, ranks, MODEL.experts_per_token), local, experts


def test_only_the_expert_layers_change_and_they_see_every_ranks_tokens() -> None:
    model, local, experts = composed()
    batch = BatchShape((1,) * 64, (900,) * 64)
    mine, theirs = model.breakdown(batch).by_operator(), local.breakdown(batch).by_operator()
    for name in ("attn_decode", "attn_qkv_proj", "moe_router", "lm_head"):
        assert mine[name] == pytest.approx(theirs[name])
    gathered = experts.breakdown(BatchShape((128,), (0,))).by_operator()
    assert mine["moe_experts"] == pytest.approx(gathered["moe_experts"])
    assert mine["ep_all_to_all"] > 0 and "ep_all_to_all" not in theirs
    assert model.iteration_time(batch) == pytest.approx(model.breakdown(batch).seconds)


def test_the_exchange_moves_hidden_states_not_top_k_copies() -> None:
    """allgather + reduce-scatter of T tokens' hidden states: the in-group all-to-all priced for
    T x ep / top-k tokens (it counts top-k x hidden / ep bytes per token)."""
    model, _, experts = composed()
    exchange = model.breakdown(BatchShape((256,), (0,))).by_operator()["ep_all_to_all"]
    as_bytes = experts.breakdown(BatchShape((512 * 2 // MODEL.experts_per_token,), (0,))).by_operator()["ep_all_to_all"]
    assert exchange == pytest.approx(as_bytes)


def test_splitting_the_experts_shortens_a_weight_bound_decode_step() -> None:
    model, local, _ = composed()
    batch = BatchShape((1,) * 128, (500,) * 128)  # touches every expert: each rank reads half of them
    assert model.iteration_time(batch) < local.iteration_time(batch)


@settings(max_examples=25)
@given(st.lists(st.integers(1, 4000), min_size=1, max_size=40), st.integers(1, 6))
def test_a_decode_stretch_equals_pricing_step_by_step(contexts: list[int], steps: int) -> None:
    model, _, _ = composed()
    stretch = model.decode_stretch_times(np.array(contexts), steps)
    ones = (1,) * len(contexts)
    by_step = [model.iteration_time(BatchShape(ones, tuple(c + k for c in contexts))) for k in range(steps)]
    np.testing.assert_allclose(stretch, by_step, rtol=1e-9)


def test_regathering_prices_the_experts_at_the_tokens_the_ranks_really_gathered() -> None:
    """A rank of 300 tokens beside one of 20 gathers 320, not 2 x 300: the correction swaps the
    expert and exchange times of 600 gathered tokens for those of 320."""
    model, _, experts = composed()
    batch = BatchShape((300,), (0,))
    corrected = model.iteration_time(batch) + model.regathered_s(300, 320)
    at_320 = experts.breakdown(BatchShape((320,), (0,))).by_operator()["moe_experts"]
    at_600 = experts.breakdown(BatchShape((600,), (0,))).by_operator()["moe_experts"]
    exchange_320 = model.breakdown(BatchShape((160,), (0,))).by_operator()["ep_all_to_all"]
    exchange_600 = model.breakdown(batch).by_operator()["ep_all_to_all"]
    assert corrected == pytest.approx(model.iteration_time(batch) + at_320 - at_600 + exchange_320 - exchange_600)
    assert corrected < model.iteration_time(batch)
    assert model.regathered_s(300, 600) == 0.0 and model.regathered_s(0, 5) == 0.0


def test_unequal_shares_exchange_as_long_as_the_busiest_link_carries() -> None:
    """The rank with the fewest tokens receives all the others': 2,048 beside 100 moves 2,048
    tokens through that link, as equal shares of 4,096 do."""
    assert exchanged_tokens([2048, 100]) == 4096
    assert exchanged_tokens([300, 300]) == 600
    assert exchanged_tokens([30, 10, 20]) == 75  # the 10-token rank receives 50, as equal shares of 75 put there
    assert exchanged_tokens([7]) == 7


@given(st.lists(st.integers(1, 5000), min_size=2, max_size=8))
def test_exchanged_tokens_match_equal_shares_and_never_fall_below_the_gathered(shares: list[int]) -> None:
    exchanged = exchanged_tokens(shares)
    ranks = len(shares)
    assert exchanged >= sum(shares) - 1  # rounding
    assert exchanged == pytest.approx((sum(shares) - min(shares)) * ranks / (ranks - 1), abs=0.5)
    assert exchanged_tokens([shares[0]] * ranks) == shares[0] * ranks


def test_regathering_prices_the_exchange_at_the_exchanged_tokens() -> None:
    """A 300-token rank beside a 20-token one: experts at the 320 gathered, the exchange as long
    as for 600 (the 300 tokens cross the small rank's link), i.e. unchanged."""
    model, _, experts = composed()
    at_320 = experts.breakdown(BatchShape((320,), (0,))).by_operator()["moe_experts"]
    at_600 = experts.breakdown(BatchShape((600,), (0,))).by_operator()["moe_experts"]
    assert model.regathered_s(300, 320, exchanged_tokens([300, 20])) == pytest.approx(at_320 - at_600)
    assert model.regathered_s(300, 320, 320) == pytest.approx(model.regathered_s(300, 320))

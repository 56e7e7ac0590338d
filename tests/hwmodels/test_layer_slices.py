"""Layered prefill's pricing: a prompt through one group of layers beside full-depth decodes."""
import pytest

from servesim.hwmodels import BatchShape, LayerSlice, ParallelPlan, RooflineCostModel, load_hardware, load_model
from servesim.hwmodels.expert_traffic import ExpertTraffic
from servesim.hwmodels.layer_slices import LayerSliceCostModel

MODEL = load_model("qwen3-30b-a3b")
ROOFLINE = RooflineCostModel(MODEL, load_hardware("h100-sxm"), ParallelPlan())
LAYERED = LayerSliceCostModel(ROOFLINE, MODEL.num_layers)
DECODES = BatchShape((1,) * 16, (500,) * 16)


def with_slice(batch, piece):
    return BatchShape(batch.new_tokens, batch.context_lens, (piece,))


def test_batches_without_slices_cost_what_the_inner_model_says():
    assert LAYERED.iteration_time(DECODES) == ROOFLINE.iteration_time(DECODES)
    assert LAYERED.decode_stretch_times(DECODES.context_lens, 5).tolist() == \
        ROOFLINE.decode_stretch_times(DECODES.context_lens, 5).tolist()


def test_a_slice_of_every_layer_costs_what_the_whole_prompt_does():
    whole = BatchShape(DECODES.new_tokens + (2048,), DECODES.context_lens + (0,))
    sliced = with_slice(DECODES, LayerSlice(2048, 0, 0, 1))
    assert LAYERED.iteration_time(sliced) == pytest.approx(ROOFLINE.iteration_time(whole), rel=1e-9)


@pytest.mark.parametrize("groups", [2, 4, 6])
def test_the_groups_of_a_prompt_add_up_to_the_prompt_plus_idle_iterations(groups):
    prompt = BatchShape((4096,), (0,))
    empty = ROOFLINE.iteration_time(BatchShape((), ()))
    total = sum(LAYERED.iteration_time(BatchShape((), (), (LayerSlice(4096, 0, g, groups),))) for g in range(groups))
    assert total == pytest.approx(ROOFLINE.iteration_time(prompt) + (groups - 1) * empty, rel=1e-9)


def test_a_group_iteration_costs_more_than_the_decodes_and_less_than_the_whole_prompt_beside_them():
    whole = BatchShape(DECODES.new_tokens + (4096,), DECODES.context_lens + (0,))
    group = LAYERED.iteration_time(with_slice(DECODES, LayerSlice(4096, 0, 1, 4)))
    assert ROOFLINE.iteration_time(DECODES) < group < ROOFLINE.iteration_time(whole) / 2


def test_the_breakdown_keeps_per_layer_operators_over_every_layer():
    cost = LAYERED.breakdown(with_slice(DECODES, LayerSlice(1024, 0, 2, 4)))
    assert {op.calls for op in cost.operators if op.name == "moe_experts"} == {MODEL.num_layers}
    assert cost.seconds == pytest.approx(LAYERED.iteration_time(with_slice(DECODES, LayerSlice(1024, 0, 2, 4))))


def test_layered_prefill_reads_expert_weights_once_per_group_where_chunks_read_them_per_chunk():
    traffic = ExpertTraffic(MODEL)
    prompt, chunk, groups = 4096, 512, 4
    chunked = sum(traffic.of_batch(BatchShape((chunk,), (start,)))[0] for start in range(0, prompt, chunk))
    layered = sum(traffic.of_batch(BatchShape((), (), (LayerSlice(prompt, 0, g, groups),)))[0] for g in range(groups))
    assert layered == pytest.approx(MODEL.num_moe_layers * traffic.routing.touched(prompt))
    assert chunked > 7 * layered

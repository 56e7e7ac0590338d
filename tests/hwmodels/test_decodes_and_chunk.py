"""A decodes-and-chunk step priced from its sums equals `iteration_time` of its shape, to the bit.

The engine prices every later step of a prompt's chunks this way (`sim.engine.prompt_chunks`),
so a model that answers must give exactly what pricing the built shape gives, or fast-forwarded
runs would drift from stepped ones.
"""
from __future__ import annotations

import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.hwmodels import BatchShape, ConstantCostModel, ParallelPlan, RooflineCostModel, load_hardware, load_model
from servesim.hwmodels.cost_model import CostModel, IterationCost
from servesim.hwmodels.expert_parallel import DataParallelExpertCostModel
from servesim.hwmodels.layer_slices import LayerSliceCostModel
from servesim.hwmodels.tables import TableCostModel, TableRangeWarning, load_shipped
from servesim.sim.engine.overheads import EngineOverheadCostModel, vllm_capture_sizes

LLAMA_70B, A100 = load_model("llama-2-70b"), load_hardware("a100-80g")
QWEN_MOE, H100 = load_model("qwen3-30b-a3b"), load_hardware("h100-sxm")


def _table_model() -> TableCostModel:
    tables, label = load_shipped("a100-80g", "llama-2-70b", "vidur")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TableRangeWarning)
        return TableCostModel(LLAMA_70B, A100, ParallelPlan(tp=2), tables, label)


def _models() -> dict[str, CostModel]:
    roofline = RooflineCostModel(LLAMA_70B, A100, ParallelPlan(tp=2))
    moe_local = RooflineCostModel(QWEN_MOE, H100, ParallelPlan())
    moe_experts = RooflineCostModel(QWEN_MOE, H100, ParallelPlan(tp=2, ep=2))
    return {
        "constant": ConstantCostModel(0.01, 1e-5),
        "roofline": roofline,
        "table": _table_model(),
        "overheads": EngineOverheadCostModel(roofline, vllm_capture_sizes(64), per_iteration_s=0.002,
                                             per_sequence_s=1e-5, per_eager_iteration_s=0.004),
        "expert_parallel": DataParallelExpertCostModel(moe_local, moe_experts, 2, 2, QWEN_MOE.experts_per_token),
        "layer_slices": LayerSliceCostModel(roofline, LLAMA_70B.num_layers),
    }


MODELS = _models()


@pytest.mark.filterwarnings("ignore::servesim.hwmodels.tables.TableRangeWarning")
@settings(max_examples=60)
@given(st.sampled_from(sorted(MODELS)), st.lists(st.integers(1, 6000), max_size=80), st.integers(2, 4096),
       st.integers(0, 6000))
def test_priced_from_sums_equals_pricing_the_shape(name: str, decode_contexts: list[int], chunk: int,
                                                    chunk_context: int) -> None:
    model = MODELS[name]
    shape = BatchShape((1,) * len(decode_contexts) + (chunk,), (*decode_contexts, chunk_context))
    priced = model.decodes_and_chunk_by_sum(len(decode_contexts), sum(decode_contexts), chunk, chunk_context)
    assert priced == model.iteration_time(shape)


class _ShapesOnly(CostModel):
    """A plug-in model that prices shapes only."""

    def breakdown(self, batch: BatchShape) -> IterationCost:
        raise NotImplementedError

    def iteration_time(self, batch: BatchShape) -> float:
        return 0.01 * len(batch.new_tokens)

    def describe(self) -> dict:
        return {"kind": "shapes_only"}


def test_a_model_without_the_hook_declines_and_its_wrappers_pass_that_on() -> None:
    """None tells the engine to build the shape and call `iteration_time`."""
    inner = _ShapesOnly()
    assert inner.decodes_and_chunk_by_sum(3, 300, 64, 128) is None
    assert EngineOverheadCostModel(inner, (1, 2, 4)).decodes_and_chunk_by_sum(3, 300, 64, 128) is None
    assert LayerSliceCostModel(inner, 4).decodes_and_chunk_by_sum(3, 300, 64, 128) is None

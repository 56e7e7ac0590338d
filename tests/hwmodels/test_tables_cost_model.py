"""TableCostModel: shipped Vidur tables give plausible times; lookups agree; out-of-grid warns once."""
import warnings

import numpy as np
import pytest

from servesim.hwmodels import BatchShape, ParallelPlan, RooflineCostModel, load_hardware, load_model
from servesim.hwmodels.errors import CatalogError
from servesim.hwmodels.tables import TableCostModel, TableRangeWarning, list_shipped, load_shipped


def a100_70b_tp2() -> TableCostModel:
    tables, label = load_shipped("a100-80g", "llama-2-70b", "vidur")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TableRangeWarning)
        return TableCostModel(load_model("llama-2-70b"), load_hardware("a100-80g"), ParallelPlan(tp=2), tables, label)


def test_shipped_tables_cover_the_converted_models_and_the_cpu_model():
    shipped = set(list_shipped())
    assert {("vidur", "a100-80g", "llama-2-7b"), ("vidur", "a100-80g", "llama-2-70b"),
            ("vidur", "a100-80g", "llama-3.1-8b"), ("vidur", "a100-80g", "llama-3.1-70b"),
            ("vidur", "h100-sxm", "llama-2-7b"), ("vidur", "h100-sxm", "llama-2-70b"),
            ("profiled", "cpu", "tiny-llama")} <= shipped
    tables, _ = load_shipped("a100-80g", "llama-3.1-8b", "vidur")
    assert tables.metadata["source"]["licence"].startswith("MIT")
    assert "Meta-Llama-3-8B" in tables.metadata["source"]["model_measured"]


def test_vidur_a100_gemms_are_within_a_factor_of_the_roofline():
    model = a100_70b_tp2()
    roofline = RooflineCostModel(load_model("llama-2-70b"), load_hardware("a100-80g"), ParallelPlan(tp=2))
    batch = BatchShape((2048,), (0,))
    table, roof = model.breakdown(batch).by_operator(), roofline.breakdown(batch).by_operator()
    for name in ("mlp_gate_up", "mlp_down", "attn_qkv_proj"):
        assert 1.0 <= table[name] / roof[name] <= 2.0, name  # measured kernels are slower than the ideal
    assert 0.03 < model.iteration_time(BatchShape((1,) * 64, (1000,) * 64)) < 0.2  # 80 layers at TP2


def test_fast_path_breakdown_and_stretch_agree():
    model = a100_70b_tp2()
    for batch in (BatchShape((512,), (0,)), BatchShape((100, 1, 1), (300, 900, 1200)), BatchShape((1,) * 8, (64,) * 8)):
        assert model.iteration_time(batch) == pytest.approx(model.breakdown(batch).seconds, rel=1e-12)
    contexts = np.array([100, 700, 2000])
    stepwise = [model.iteration_time(BatchShape((1, 1, 1), tuple(int(c) + k for c in contexts))) for k in range(40)]
    assert np.allclose(model.decode_stretch_times(contexts, 40), stepwise, rtol=1e-12)


def test_decode_time_grows_with_context_and_batch():
    """Measured grids are noisy, so only near-monotone: never more than 1% back between points."""
    model = a100_70b_tp2()
    by_context = np.array([model.iteration_time(BatchShape((1,) * 16, (c,) * 16)) for c in range(100, 4000, 37)])
    assert by_context[-1] > by_context[0] and np.all(np.diff(by_context) >= -0.01 * by_context[1:])
    by_batch = [model.iteration_time(BatchShape((1,) * b, (512,) * b)) for b in range(1, 128)]
    assert by_batch[-1] > by_batch[0]


def test_out_of_grid_warns_once_per_operator_and_is_recorded():
    model = a100_70b_tp2()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for context in (5000, 6000, 7000):
            model.iteration_time(BatchShape((1, 1), (context, context)))
        model.iteration_time(BatchShape((1,), (100,)))
    messages = [str(w.message) for w in caught if issubclass(w.category, TableRangeWarning)]
    assert len(messages) == 1
    assert "attn_decode" in messages[0] and "[32, 4032]" in messages[0] and "roofline" in messages[0]
    assert set(model.describe()["out_of_grid"]) == {"attn_decode"}
    assert model.iteration_time(BatchShape((1,), (8000,))) > model.iteration_time(BatchShape((1,), (4000,)))


def test_out_of_grid_names_the_span_measured_at_its_batch():
    """AIConfigurator measured large decode batches at short contexts only: 130 decodes up to 1,023."""
    tables, label = load_shipped("h100-sxm", "llama-3.1-8b", "aiconfigurator")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = TableCostModel(load_model("llama-3.1-8b"), load_hardware("h100-sxm"), ParallelPlan(), tables, label)
        model.iteration_time(BatchShape((1,) * 130, (1027,) * 130))
    message = next(str(w.message) for w in caught if "attn_decode" in str(w.message))
    assert "130 decodes at mean context 1027 is outside its grid" in message
    assert "context [1, 65535]; at 130 decodes, context [1, 1023]" in message


def test_missing_operators_are_named_when_built_and_in_the_summary():
    tables, label = load_shipped("a100-80g", "llama-2-7b", "vidur")
    with pytest.warns(TableRangeWarning, match="attn_decode, attn_prefill, cpu_overhead, kv_cache_write, lm_head"):
        model = TableCostModel(load_model("llama-2-7b"), load_hardware("a100-80g"), ParallelPlan(), tables, label)
    described = model.describe()
    assert described["kind"] == "table" and described["tables"] == "hwmodels/data/tables/vidur/a100-80g/llama-2-7b"
    assert "attn_prefill" in described["roofline_operators"] and "mlp_down" in described["table_operators"]
    assert "Vidur" in described["source"]


@pytest.mark.parametrize("model, hardware, tp, message", [
    ("llama-2-70b", "a100-80g", 3, "tensor-parallel degrees \\[1, 2, 4, 8\\], not tp=3"),
    ("llama-3.1-70b", "a100-80g", 2, "measured for model 'llama-2-70b'"),
    ("llama-2-70b", "h100-sxm", 2, "measured on hardware 'a100-80g'"),
])
def test_tables_for_another_model_hardware_or_tp_are_refused(model, hardware, tp, message):
    tables, label = load_shipped("a100-80g", "llama-2-70b", "vidur")
    with pytest.raises(CatalogError, match=message):
        TableCostModel(load_model(model), load_hardware(hardware), ParallelPlan(tp=tp), tables, label)


def test_no_shipped_tables_lists_what_exists():
    with pytest.raises(CatalogError, match="no shipped cost tables.*vidur/a100-80g/llama-2-70b.*simrun profile"):
        load_shipped("h200", "llama-3.1-8b", "vidur")
    with pytest.raises(CatalogError, match="no shipped cost tables for model 'tiny-llama' on hardware 'h200'"):
        load_shipped("h200", "tiny-llama")

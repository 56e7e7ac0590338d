"""A box's own link: collectives priced on it (ring formulas) instead of the tables' measured ones."""
import warnings

import pytest

from servesim.hwmodels import BatchShape, ParallelPlan, RooflineCostModel, load_hardware, load_model
from servesim.hwmodels.tables import TableCostModel, TableRangeWarning, load_shipped

MODEL, GPU = "qwen3-32b", "rtx-pro-6000"


def tp2_tables(link_gbps: float | None = None, latency_us: float | None = None) -> TableCostModel:
    """The shipped AIConfigurator tables of Qwen3-32B at TP2; with a link, collectives go on it."""
    model, plan = load_model(MODEL), ParallelPlan(tp=2)
    hardware = load_hardware(GPU).with_link(link_gbps, latency_us)
    tables, label = load_shipped(GPU, MODEL, "aiconfigurator", plan.tp)
    own = link_gbps is not None or latency_us is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TableRangeWarning)
        return TableCostModel(model, hardware, plan, tables, label, RooflineCostModel(model, hardware, plan),
                              measured_collectives=not own)


def all_reduce_seconds(cost: TableCostModel, batch: BatchShape) -> float:
    return sum(op.seconds for op in cost.breakdown(batch).operators if op.name == "tp_all_reduce")


def test_with_link_replaces_the_entry_link_and_nothing_else() -> None:
    entry = load_hardware(GPU)
    assert entry.with_link(None, None) is entry
    boxed = entry.with_link(16.0, 20.0)
    assert (boxed.intra_node_link_gbps, boxed.link_latency_us) == (16.0, 20.0)
    assert boxed.memory_bandwidth_gbps == entry.memory_bandwidth_gbps and boxed.peak_tflops == entry.peak_tflops
    mesh = load_hardware("mi300x")
    assert mesh.peer_link_gbps is not None and mesh.with_link(50.0, None).peer_link_gbps is None
    assert mesh.with_link(None, 3.0).peer_link_gbps == mesh.peer_link_gbps


@pytest.mark.parametrize("tokens", [128, 2048])
def test_all_reduce_on_the_link_is_the_ring_formula(tokens: int) -> None:
    cost = tp2_tables(16.0, 20.0)
    assert "tp_all_reduce" in cost.roofline_operators and cost.describe()["collectives"] == "roofline on the link"
    nbytes = tokens * load_model(MODEL).hidden_size * 2  # bf16 activations
    ring = 2 * (2 - 1) / 2 * nbytes / 16e9 + 2 * (2 - 1) * 20e-6
    layers = load_model(MODEL).num_layers
    assert all_reduce_seconds(cost, BatchShape((tokens,), (0,))) == pytest.approx(2 * layers * ring, rel=1e-6)


def test_a_slow_link_costs_a_large_prefill_step_far_more_than_a_decode_step() -> None:
    """The measured pattern on the Qwen3-32B TP2 run: decode steps as the tables say, prefill-heavy
    steps much longer. A 16 GB/s link moves a 2048-token step by ~100 ms and a 128-decode step by ~1 ms."""
    measured, boxed = tp2_tables(), tp2_tables(16.0, 20.0)
    assert measured.describe()["collectives"] == "tables" and "tp_all_reduce" in measured.table_operators
    decode = BatchShape((1,) * 128, (1200,) * 128)
    prefill = BatchShape((2048,), (0,))
    decode_gap = boxed.iteration_time(decode) - measured.iteration_time(decode)
    prefill_gap = boxed.iteration_time(prefill) - measured.iteration_time(prefill)
    assert abs(decode_gap) < 0.03 * measured.iteration_time(decode)
    assert prefill_gap > 0.25 * measured.iteration_time(prefill)

"""The SM-share curve: diminishing returns for memory-bound decode, near-linear prefill, contention."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.hwmodels import BatchShape, ConstantCostModel, ParallelPlan, RooflineCostModel, load_hardware, load_model
from servesim.hwmodels.sm_share import PhaseWork, SmShareModel

MODEL = load_model("llama-3.1-8b")
HARDWARE = load_hardware("h100-sxm")
PLAN = ParallelPlan(tp=1, pp=1, ep=1)
ROOFLINE = RooflineCostModel(MODEL, HARDWARE, PLAN)
SHARES = SmShareModel.for_model(ROOFLINE, MODEL, HARDWARE, PLAN, saturation_share=0.4)
DECODE = BatchShape((1,) * 64, (1000,) * 64)
PREFILL = BatchShape((2048,), (0,))


def test_on_the_whole_device_a_phase_takes_the_cost_models_time():
    for batch in (DECODE, PREFILL):
        assert SHARES.work(batch).seconds(1.0) == pytest.approx(ROOFLINE.iteration_time(batch))


def test_memory_bound_decode_stops_getting_faster_at_the_saturation_share():
    decode = SHARES.work(DECODE)
    full = float(decode.seconds(1.0))
    assert decode.seconds(0.4) == pytest.approx(full)
    assert decode.seconds(0.6) == pytest.approx(full)
    assert decode.seconds(0.2) == pytest.approx(2 * full)  # below saturation, bandwidth shrinks with the SMs


def test_compute_bound_prefill_scales_nearly_as_one_over_the_share():
    prefill = SHARES.work(PREFILL)
    full = float(prefill.seconds(1.0))
    assert 1.9 * full < prefill.seconds(0.5) <= 2.0 * full
    assert 3.7 * full < prefill.seconds(0.25) <= 4.0 * full


def test_the_engines_host_time_is_not_scaled():
    work = PhaseWork(np.array([1.0]), np.array([0.1]), kernel_s=0.02, host_s=0.005)
    assert work.seconds(0.5) == pytest.approx(0.02 * 2 + 0.005)


def test_contention_slows_both_phases_when_their_demands_exceed_the_bandwidth():
    decode, small_prefill = SHARES.work(DECODE), SHARES.work(BatchShape((64,), (0,)))
    share = np.array(0.5)
    factor = float(SHARES.contention(small_prefill, decode, share))
    expected = float(small_prefill.bandwidth_demand(share) + decode.bandwidth_demand(0.5))
    assert factor == pytest.approx(expected) and factor > 1
    prefill_s, decode_s = SHARES.phase_seconds(small_prefill, decode, share)
    assert prefill_s > small_prefill.seconds(share) and decode_s > decode.seconds(0.5)


def test_no_contention_when_the_demands_fit_or_one_phase_runs():
    decode, prefill = SHARES.work(DECODE), SHARES.work(PREFILL)
    tiny = PhaseWork(np.array([1.0]), np.array([1e-6]), kernel_s=0.01, host_s=0.0)
    assert SHARES.contention(tiny, tiny, np.array(0.5)) == 1.0
    alone_prefill, idle = SHARES.phase_seconds(prefill, None, np.array([0.3, 0.7]))
    assert np.allclose(alone_prefill, prefill.seconds(np.array([0.3, 0.7]))) and not idle.any()
    idle, alone_decode = SHARES.phase_seconds(None, decode, np.array([0.3]))
    assert alone_decode[0] == pytest.approx(float(decode.seconds(0.7))) and not idle.any()


def test_a_phase_with_no_share_never_finishes():
    assert np.isinf(SHARES.work(PREFILL).seconds(0.0))
    assert SHARES.work(DECODE).bandwidth_demand(0.0) == 0.0


def test_the_curve_is_a_ratio_over_any_cost_model():
    constant = SmShareModel.for_model(ConstantCostModel(0.05), MODEL, HARDWARE, PLAN)
    assert constant.work(PREFILL).seconds(0.5) / 0.05 == pytest.approx(SHARES.work(PREFILL).scale(0.5))


def test_saturation_share_must_be_a_share():
    with pytest.raises(ValueError, match="saturation_share"):
        SmShareModel.for_model(ROOFLINE, MODEL, HARDWARE, PLAN, saturation_share=0)


batches = st.lists(st.tuples(st.integers(1, 4096), st.integers(0, 8192)), min_size=1, max_size=8).map(
    lambda entries: BatchShape(tuple(n for n, _ in entries), tuple(c for _, c in entries)))


@settings(max_examples=60)
@given(batches, st.floats(0.01, 1.0), st.floats(0.01, 1.0), st.floats(1.0, 3.0))
def test_more_sms_never_slow_a_phase_and_contention_never_speeds_it(batch, a, b, factor):
    work = SHARES.work(batch)
    low, high = sorted((a, b))
    assert work.seconds(high) <= work.seconds(low) * (1 + 1e-12)
    assert work.seconds(high, factor) >= work.seconds(high) * (1 - 1e-12)
    assert 0 <= work.bandwidth_demand(high) <= 1 + 1e-12

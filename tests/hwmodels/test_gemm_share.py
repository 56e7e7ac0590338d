"""A device's own measured GEMM share of peak replaces its family's (the RTX 4090 in the ada family)."""
from __future__ import annotations

import dataclasses

import pytest

from servesim.hwmodels import BatchShape, CatalogError, ParallelPlan, load_hardware, load_model
from servesim.hwmodels.catalog import build_spec
from servesim.hwmodels.hardware_spec import HardwareSpec
from servesim.hwmodels.operators import Operator, OpKind
from servesim.hwmodels.roofline import RooflineCostModel

LLAMA = load_model("llama-3.1-8b")


def roofline(hardware: HardwareSpec, **overrides: float) -> RooflineCostModel:
    return RooflineCostModel(LLAMA, hardware, ParallelPlan(), **overrides)


def gemm(flops: float) -> Operator:
    return Operator("mlp_gate_up", 1, flops, flops / 1000, OpKind.COMPUTE, weight_gemm=True)


def test_a_large_gemm_on_the_4090_runs_at_its_measured_share_of_peak() -> None:
    rtx = load_hardware("rtx-4090")
    assert rtx.gemm_compute_efficiency == {"bf16": 0.96, "fp16": 0.96}
    flops = 2 * 8192 * 14336 * 4096.0  # a prefill's MLP GEMM: compute-bound, far past the curve's ramp
    achieved = flops / roofline(rtx).operator_seconds(gemm(flops)) / 1e12
    assert achieved == pytest.approx(0.96 * 165.2, rel=0.03)
    family_only = dataclasses.replace(rtx, gemm_compute_efficiency=None)
    assert flops / roofline(family_only).operator_seconds(gemm(flops)) / 1e12 < 0.65 * 165.2


def test_the_share_moves_prefill_not_decode_and_not_the_family_members() -> None:
    rtx = load_hardware("rtx-4090")
    family_only = dataclasses.replace(rtx, gemm_compute_efficiency=None)
    prefill, decode = BatchShape((2048,), (0,)), BatchShape((1,) * 32, (1300,) * 32)
    measured, fitted = roofline(rtx), roofline(family_only)
    assert measured.iteration_time(prefill) < 0.75 * fitted.iteration_time(prefill)
    assert measured.iteration_time(decode) == pytest.approx(fitted.iteration_time(decode), rel=0.02)
    l40s = load_hardware("l40s")
    assert l40s.gemm_compute_efficiency is None


def test_an_explicit_compute_efficiency_still_wins() -> None:
    rtx = load_hardware("rtx-4090")
    flops = 1e12
    forced = roofline(rtx, compute_efficiency=0.5).operator_seconds(gemm(flops))
    assert flops / forced / 1e12 == pytest.approx(0.5 * 165.2, rel=0.03)


@pytest.mark.parametrize("shares", [{"bf16": 1.2}, {"bf16": 0.0}, {"bf17": 0.9}])
def test_a_bad_share_names_the_entry_and_the_format(shares: dict[str, float]) -> None:
    entry = {"source": "x", "kind": "gpu", "memory_gib": 24, "memory_bandwidth_gbps": 1000,
             "peak_tflops": {"bf16": 165}, "devices_per_node": 8, "intra_node_link_gbps": 32, "host_link_gbps": 32,
             "link_latency_us": 10, "inter_node_link_gbps": 12.5,
             "inter_node_latency_us": 10, "efficiency_source": "x", "gemm_compute_efficiency": shares}
    with pytest.raises(CatalogError, match=r"'gpu9'.*gemm_compute_efficiency\.bf1[67] must be a known format"):
        build_spec(HardwareSpec, "gpu9", entry)

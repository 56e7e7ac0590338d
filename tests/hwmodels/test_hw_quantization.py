"""Quantised weights (fp8, int4) and fp8 KV: bytes, KV capacity, iteration times, and the config."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.hwmodels import BatchShape, CatalogError, ParallelPlan, list_models, load_hardware, load_model
from servesim.hwmodels.dtypes import canonical_dtype, weight_element_bytes
from servesim.hwmodels.roofline import RooflineCostModel
from servesim.sim.errors import ConfigError
from servesim.sim.experiment.capacity import kv_capacity
from servesim.sim.experiment.config import MemoryConfig
from servesim.sim.experiment.loading import validate_config
from servesim.sim.runner import prepare

DECODE = BatchShape((1,) * 32, (1024,) * 32)


def _linear_params(name: str, plan: ParallelPlan) -> int:
    """Parameters of one device's linear layers (the ones stored in `weight_dtype`)."""
    model = load_model(name)
    p = model.layer_params(plan.tp)
    layers = model.num_layers
    per_moe_layer = model.num_experts * p.expert + p.shared_experts
    return (layers * (p.qkv + p.out) + model.num_dense_layers * (p.mlp_gate_up + p.mlp_down)
            + model.num_moe_layers * per_moe_layer)


@settings(max_examples=30)
@given(name=st.sampled_from(list_models()), tp=st.sampled_from([1, 2, 4, 8]))
def test_weight_bytes_drop_by_the_linear_layers_share(name: str, tp: int) -> None:
    plan = ParallelPlan(tp=tp)
    model = load_model(name).served_in(weight_dtype="bf16")
    bf16 = model.weight_bytes_per_device(plan)
    fp8 = model.served_in(weight_dtype="fp8").weight_bytes_per_device(plan)
    int4 = model.served_in(weight_dtype="int4").weight_bytes_per_device(plan)
    linear = _linear_params(name, plan)
    assert bf16 - fp8 == pytest.approx(linear * 1, abs=1)  # fp8 halves the linear layers
    assert bf16 - int4 == pytest.approx(linear * (2 - 0.5 - 2 / 128), abs=1)  # int4 quarters them, plus scales
    assert int4 < fp8 < bf16


def test_int4_counts_its_group_scales_and_is_weight_only() -> None:
    assert weight_element_bytes("int4") == 0.5 + 2 / 128
    assert weight_element_bytes("fp8") == 1 and weight_element_bytes("bf16") == 2
    assert canonical_dtype("W4A16") == "int4"
    with pytest.raises(CatalogError, match="kv_dtype 'int4' is a weight-only format"):
        load_model("llama-3.1-8b").served_in(kv_dtype="int4")


def test_fp8_kv_halves_kv_bytes_and_doubles_the_blocks() -> None:
    model, hardware, plan = load_model("llama-3.1-8b"), load_hardware("h100-sxm"), ParallelPlan()
    fp8 = model.served_in(kv_dtype="fp8")
    assert 2 * fp8.kv_bytes_per_token == model.kv_bytes_per_token
    assert 2 * fp8.kv_bytes_per_token_per_device(plan) == model.kv_bytes_per_token_per_device(plan)
    base = kv_capacity(model, hardware, plan, MemoryConfig(), 8192, 256)
    half = kv_capacity(fp8, hardware, plan, MemoryConfig(), 8192, 256)
    assert half.num_blocks in (2 * base.num_blocks, 2 * base.num_blocks + 1)
    both = kv_capacity(model.served_in(weight_dtype="fp8", kv_dtype="fp8"), hardware, plan, MemoryConfig(), 8192, 256)
    freed = base.weight_bytes - both.weight_bytes
    assert freed == _linear_params("llama-3.1-8b", plan)
    assert both.num_blocks == pytest.approx(half.num_blocks + freed / (16 * half.kv_bytes_per_token), abs=1)


def test_fp8_weights_run_fp8_gemms_and_int4_runs_at_the_activation_rate() -> None:
    model, h100 = load_model("llama-3.1-8b"), load_hardware("h100-sxm")
    times = {}
    for dtype in ("bf16", "fp8", "int4"):
        cost = RooflineCostModel(model.served_in(weight_dtype=dtype), h100, ParallelPlan())
        times[dtype] = cost.iteration_time(DECODE), cost.iteration_time(BatchShape((8192,), (0,)))
        assert cost.dtype == ("fp8" if dtype == "fp8" else "bf16")
    # Decode streams the weights: fewer bytes, shorter step.
    assert times["int4"][0] < times["fp8"][0] < times["bf16"][0]
    # A large prefill is compute-bound: fp8 tensor cores help, int4 (dequantised to bf16) does not.
    assert times["fp8"][1] < 0.85 * times["bf16"][1]
    assert times["int4"][1] == pytest.approx(times["bf16"][1], rel=0.05)
    # Without fp8 units (A100), fp8 weights only save bytes.
    a100 = RooflineCostModel(model.served_in(weight_dtype="fp8"), load_hardware("a100-80g"), ParallelPlan())
    assert a100.dtype == "bf16"


def test_fp8_kv_speeds_up_long_context_decode_attention() -> None:
    model, h100 = load_model("llama-3.1-8b"), load_hardware("h100-sxm")
    batch = BatchShape((1,) * 64, (16000,) * 64)
    bf16 = RooflineCostModel(model, h100, ParallelPlan()).breakdown(batch).by_operator()["attn_decode"]
    fp8 = RooflineCostModel(model.served_in(kv_dtype="fp8"), h100, ParallelPlan()).breakdown(batch).by_operator()
    assert 0.4 * bf16 < fp8["attn_decode"] < 0.8 * bf16


BASE = {
    "cost_model": {"kind": "roofline"},
    "workload": {"arrival": {"process": "poisson", "rate": 1.0}, "prompt_tokens": {"dist": "fixed", "value": 100},
                 "output_tokens": {"dist": "fixed", "value": 4}, "num_requests": 3},
}


def test_config_picks_the_formats_per_experiment() -> None:
    plain = prepare(validate_config(BASE))
    model = {"name": "llama-3.1-8b", "weight_dtype": "fp8", "kv_dtype": "fp8"}
    quantised = prepare(validate_config(BASE | {"model": model}))
    assert (quantised.model.weight_dtype, quantised.model.kv_dtype) == ("fp8", "fp8")
    assert quantised.capacity.kv_bytes_per_token * 2 == plain.capacity.kv_bytes_per_token
    assert quantised.capacity.num_blocks > 2 * plain.capacity.num_blocks
    described = quantised.cost_model.describe()
    assert (described["dtype"], described["kv_dtype"]) == ("fp8", "fp8")
    same = prepare(validate_config(BASE | {"model": {"name": "llama-3.1-8b"}}))
    assert same.model == plain.model


@pytest.mark.parametrize(("model", "message"), [
    ({"name": "llama-3.1-8b", "hf_config": "x.json"}, "exactly one of `name` and `hf_config`"),
    ({"weight_dtype": "fp8"}, "exactly one of `name` and `hf_config`"),
    ({"name": "llama-3.1-8b", "kv_dtype": "int4"}, "model.ModelRef.kv_dtype"),
])
def test_bad_model_formats_are_config_errors(model: dict, message: str) -> None:
    with pytest.raises(ConfigError, match="model") as error:
        validate_config(BASE | {"model": model})
    assert message.split(".")[-1] in str(error.value)

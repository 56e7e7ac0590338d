"""Derived model quantities against published figures, and their TP/PP sharding."""
from __future__ import annotations

from dataclasses import replace

import pytest

from servesim.hwmodels import ParallelPlan, load_model

# (model, total parameters, active parameters per token) as published by the model authors.
PUBLISHED_PARAMS = [
    ("llama-3.1-8b", 8.0e9, 8.0e9),
    ("llama-2-70b", 69e9, 69e9),
    ("mixtral-8x7b", 46.7e9, 12.9e9),
    ("deepseek-v3", 671e9, 37e9),
    ("qwen3-30b-a3b", 30.5e9, 3.3e9),
]


@pytest.mark.parametrize(("name", "total", "active"), PUBLISHED_PARAMS)
def test_parameter_counts_match_published(name: str, total: float, active: float) -> None:
    model = load_model(name)
    assert model.num_params == pytest.approx(total, rel=0.03)
    assert model.num_active_params == pytest.approx(active, rel=0.03)


def test_kv_bytes_per_token() -> None:
    assert load_model("llama-3.1-8b").kv_bytes_per_token == 2 * 32 * 8 * 128 * 2 == 131072
    assert load_model("llama-2-7b").kv_bytes_per_token == 524288
    assert load_model("deepseek-v3").kv_bytes_per_token == 61 * (512 + 64) * 2


def test_weight_bytes_follow_dtypes() -> None:
    llama = load_model("llama-3.1-8b")
    assert llama.weight_bytes == 2 * llama.num_params
    deepseek = load_model("deepseek-v3")
    embeddings = 2 * deepseek.vocab_size * deepseek.hidden_size
    assert deepseek.num_params < deepseek.weight_bytes < deepseek.num_params + 2 * embeddings


def test_kv_heads_split_over_tp_but_never_below_one() -> None:
    model = load_model("llama-3.1-8b")
    per_device = {tp: model.kv_bytes_per_token_per_device(ParallelPlan(tp=tp)) for tp in (1, 2, 4, 8, 16)}
    assert per_device == {1: 131072, 2: 65536, 4: 32768, 8: 16384, 16: 16384}


def test_mla_kv_is_replicated_over_tp_and_split_over_pp() -> None:
    model = load_model("deepseek-v3")
    full = model.kv_bytes_per_token
    assert model.kv_bytes_per_token_per_device(ParallelPlan(tp=8)) == full
    assert model.kv_bytes_per_token_per_device(ParallelPlan(pp=2)) == 31 * 576 * 2


def test_kv_split_over_pp_by_layers() -> None:
    model = load_model("llama-2-70b")
    assert model.kv_bytes_per_token_per_device(ParallelPlan(pp=4)) == model.kv_bytes_per_token // 4
    assert model.kv_bytes_per_token_per_device(ParallelPlan(tp=2, pp=2)) == model.kv_bytes_per_token // 4


def test_tp_halves_weights_except_replicated_norms() -> None:
    model = load_model("llama-3.1-8b")
    full, half = model.weight_bytes, model.weight_bytes_per_device(ParallelPlan(tp=2))
    norms = (2 * model.num_layers + 1) * model.hidden_size * 2
    assert half == (full - norms) // 2 + norms


def test_tp_replicates_kv_projections_beyond_kv_heads() -> None:
    model = load_model("llama-3.1-8b")
    tp8, tp16 = (model.weight_bytes_per_device(ParallelPlan(tp=tp)) for tp in (8, 16))
    assert tp16 > tp8 / 2


def test_pp_stages_hold_their_layers_and_the_ends() -> None:
    model = load_model("llama-2-70b")
    embed = model.vocab_size * model.hidden_size * 2
    layer = (model.weight_bytes - 2 * embed - model.hidden_size * 2) // model.num_layers
    assert model.stage_layers(4) == [(0, 20), (20, 40), (40, 60), (60, 80)]
    assert model.weight_bytes_per_device(ParallelPlan(pp=4)) == 20 * layer + embed + model.hidden_size * 2


def test_tied_embeddings_counted_once_but_copied_for_pp() -> None:
    untied = load_model("tiny-llama")
    tied = replace(untied, tie_word_embeddings=True)
    embed = untied.vocab_size * untied.hidden_size
    assert untied.num_params - tied.num_params == embed
    assert tied.weight_bytes_per_device(ParallelPlan(pp=2)) == untied.weight_bytes_per_device(ParallelPlan(pp=2))


def test_flops_per_token() -> None:
    model = load_model("llama-3.1-8b")
    matmul = model.num_params - model.vocab_size * model.hidden_size
    assert model.flops_per_token(0) == 2 * matmul
    assert model.flops_per_token(1000) - model.flops_per_token(0) == 4 * 32 * 128 * 1000 * 32
    moe = load_model("mixtral-8x7b")
    assert moe.flops_per_token(0) < 2 * moe.num_active_params < 2 * moe.num_params


def test_moe_layer_counts() -> None:
    deepseek = load_model("deepseek-v3")
    assert (deepseek.num_dense_layers, deepseek.num_moe_layers) == (3, 58)
    assert (load_model("llama-2-7b").num_dense_layers, load_model("llama-2-7b").num_moe_layers) == (32, 0)

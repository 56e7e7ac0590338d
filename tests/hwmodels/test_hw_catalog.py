"""Catalog loading and validation, and HuggingFace config.json loading."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from servesim.hwmodels import ParallelPlan
from servesim.hwmodels.catalog import (
    CatalogError,
    DeviceKind,
    HardwareSpec,
    ModelSpec,
    build_spec,
    list_hardware,
    list_models,
    load_hardware,
    load_model,
    model_from_hf_config,
)

REQUIRED_MODELS = {"llama-3.1-8b", "llama-3.1-70b", "llama-2-7b", "llama-2-70b", "qwen2.5-7b", "mixtral-8x7b",
                   "qwen3-30b-a3b", "deepseek-v3", "tiny-llama"}
REQUIRED_HARDWARE = {"a100-80g", "h100-sxm", "h200", "b200", "mi300x", "l40s", "cpu"}


def test_required_entries_exist() -> None:
    assert REQUIRED_MODELS <= set(list_models())
    assert REQUIRED_HARDWARE <= set(list_hardware())


@pytest.mark.parametrize("name", list_models())
def test_every_model_loads_with_a_source(name: str) -> None:
    model = load_model(name)
    assert isinstance(model, ModelSpec) and model.name == name
    assert model.source.strip()
    assert model.num_params > 0 and model.kv_bytes_per_token > 0


@pytest.mark.parametrize("name", list_hardware())
def test_every_device_loads_with_sources(name: str) -> None:
    hardware = load_hardware(name)
    assert isinstance(hardware, HardwareSpec) and hardware.name == name
    assert hardware.source.strip() and hardware.efficiency_source.strip()
    assert hardware.peak_flops("bf16") > 0
    assert hash(hardware) == hash(load_hardware(name))


def test_hardware_kinds_and_units() -> None:
    assert load_hardware("cpu").kind is DeviceKind.CPU
    h100 = load_hardware("h100-sxm")
    assert h100.kind is DeviceKind.GPU
    assert h100.peak_flops("bf16") == 989e12
    assert h100.compute_efficiency is None and h100.memory_efficiency is None  # calibrated curves instead
    assert "hopper" in h100.efficiency_source
    cpu = load_hardware("cpu")
    assert (cpu.compute_efficiency, cpu.memory_efficiency) == (0.5, 0.7)


def test_mesh_links_limit_small_collectives() -> None:
    mi300x = load_hardware("mi300x")
    assert mi300x.collective_bytes_per_s(2) == 64e9
    assert mi300x.collective_bytes_per_s(8) == 448e9
    assert load_hardware("h100-sxm").collective_bytes_per_s(2) == 450e9


def test_unknown_model_lists_valid_names_and_suggests() -> None:
    with pytest.raises(CatalogError) as info:
        load_model("llama-3.1-8")
    message = str(info.value)
    assert "'llama-3.1-8b'" in message and "Did you mean" in message
    assert all(name in message for name in list_models())
    assert "\n" not in message


def test_unknown_hardware_lists_valid_names() -> None:
    with pytest.raises(CatalogError) as info:
        load_hardware("h100")
    message = str(info.value)
    assert "Did you mean 'h100-sxm'" in message
    assert all(name in message for name in list_hardware())


def test_missing_peak_rate_names_the_formats() -> None:
    with pytest.raises(CatalogError, match="a100-80g.*fp8.*bf16"):
        load_hardware("a100-80g").peak_flops("fp8")


def test_bad_catalog_entry_reports_every_field_at_once() -> None:
    entry = {"source": "x", "num_layers": "32", "hidden_size": 4096, "num_attention_heads": 32, "num_kv_heads": 8,
             "head_dim": 128, "intermediate_size": 11008, "vocab_size": 32000, "weight_dtype": "bf16",
             "kv_dtype": "bf16", "activation_dtype": "bf16", "hiden_size": 1}
    with pytest.raises(CatalogError) as info:
        build_spec(ModelSpec, "broken", entry)
    message = str(info.value)
    assert "broken.num_layers: expected int, got '32'" in message
    assert "broken.max_position_embeddings: missing" in message
    assert "broken.hiden_size: unknown field (did you mean 'hidden_size'?)" in message


def test_bad_values_name_the_entry() -> None:
    entry = {"source": "x", "kind": "tpu", "memory_gib": 80, "memory_bandwidth_gbps": 1000,
             "peak_tflops": {"bf16": 100}, "devices_per_node": 8, "intra_node_link_gbps": 100, "host_link_gbps": 32,
             "link_latency_us": 3, "inter_node_link_gbps": 50, "inter_node_latency_us": 5,
             "compute_efficiency": 0.8, "memory_efficiency": 0.9, "efficiency_source": "x"}
    with pytest.raises(CatalogError, match=r"gpu9.kind: expected one of \['gpu', 'cpu'\], got 'tpu'"):
        build_spec(HardwareSpec, "gpu9", entry)
    with pytest.raises(CatalogError, match="'gpu9'.*compute_efficiency must be in"):
        build_spec(HardwareSpec, "gpu9", entry | {"kind": "gpu", "compute_efficiency": 1.5})
    with pytest.raises(CatalogError, match="'m'.*num_attention_heads .* not a multiple of num_kv_heads"):
        ModelSpec("m", "s", 2, 256, 4, 3, 64, 688, 100, 128, "bf16", "bf16", "bf16")


def _write(path: Path, config: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


LLAMA_31_8B = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "num_hidden_layers": 32, "hidden_size": 4096,
    "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "intermediate_size": 14336,
    "vocab_size": 128256, "max_position_embeddings": 131072, "torch_dtype": "bfloat16", "tie_word_embeddings": False,
    "attention_bias": False,
}

DEEPSEEK_V3 = {
    "model_type": "deepseek_v3", "num_hidden_layers": 61, "hidden_size": 7168, "num_attention_heads": 128,
    "num_key_value_heads": 128, "intermediate_size": 18432, "moe_intermediate_size": 2048, "n_routed_experts": 256,
    "num_experts_per_tok": 8, "n_shared_experts": 1, "first_k_dense_replace": 3, "q_lora_rank": 1536,
    "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128, "vocab_size": 129280,
    "max_position_embeddings": 163840, "torch_dtype": "bfloat16", "tie_word_embeddings": False,
    "quantization_config": {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [128, 128]},
}


def test_hf_config_matches_catalog_llama(tmp_path: Path) -> None:
    path = _write(tmp_path / "Llama-3.1-8B" / "config.json", LLAMA_31_8B)
    model = load_model(path)
    catalog = load_model("llama-3.1-8b")
    assert model.name == "Llama-3.1-8B" and str(path) in model.source
    assert model.num_params == catalog.num_params
    assert model.kv_bytes_per_token == catalog.kv_bytes_per_token == 131072
    assert load_model(str(tmp_path / "Llama-3.1-8B")) == model


def test_hf_config_matches_catalog_deepseek(tmp_path: Path) -> None:
    model = model_from_hf_config(_write(tmp_path / "config.json", DEEPSEEK_V3))
    catalog = load_model("deepseek-v3")
    assert (model.weight_dtype, model.kv_dtype, model.activation_dtype) == ("fp8", "bf16", "bf16")
    assert model.uses_mla and model.head_dim == 192
    assert model.num_params == catalog.num_params
    assert model.weight_bytes_per_device(ParallelPlan(tp=8)) == catalog.weight_bytes_per_device(ParallelPlan(tp=8))


def test_hf_config_defaults_mixtral_and_qwen2(tmp_path: Path) -> None:
    mixtral = {"model_type": "mixtral", "num_hidden_layers": 32, "hidden_size": 4096, "num_attention_heads": 32,
               "num_key_value_heads": 8, "intermediate_size": 14336, "num_local_experts": 8, "num_experts_per_tok": 2,
               "vocab_size": 32000, "max_position_embeddings": 32768, "torch_dtype": "bfloat16"}
    model = model_from_hf_config(_write(tmp_path / "mixtral.json", mixtral))
    assert model.name == "mixtral" and model.head_dim == 128 and model.moe_intermediate_size == 14336
    assert model.num_params == load_model("mixtral-8x7b").num_params
    qwen = {"model_type": "qwen2", "num_hidden_layers": 28, "hidden_size": 3584, "num_attention_heads": 28,
            "num_key_value_heads": 4, "intermediate_size": 18944, "vocab_size": 152064,
            "max_position_embeddings": 131072, "torch_dtype": "bfloat16", "tie_word_embeddings": False}
    assert model_from_hf_config(_write(tmp_path / "qwen.json", qwen)).num_params == load_model("qwen2.5-7b").num_params


def test_hf_config_old_llama_without_kv_heads(tmp_path: Path) -> None:
    config = {k: v for k, v in LLAMA_31_8B.items() if k not in ("num_key_value_heads", "head_dim")}
    model = model_from_hf_config(_write(tmp_path / "config.json", config | {"torch_dtype": "float16"}))
    assert model.num_kv_heads == 32 and model.head_dim == 128 and model.weight_dtype == "fp16"


def test_hf_config_missing_and_bad_keys_are_all_named(tmp_path: Path) -> None:
    config = {k: v for k, v in LLAMA_31_8B.items() if k != "vocab_size"}
    config |= {"hidden_size": "4096", "torch_dtype": "int3"}
    path = _write(tmp_path / "config.json", config)
    with pytest.raises(CatalogError) as info:
        model_from_hf_config(path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert "missing required key 'vocab_size'" in message
    assert "hidden_size must be an integer, got '4096'" in message
    assert "torch_dtype must be one of" in message


def test_hf_config_malformed_files(tmp_path: Path) -> None:
    broken = tmp_path / "config.json"
    broken.write_text('{"num_hidden_layers": 2,', encoding="utf-8")
    with pytest.raises(CatalogError, match=r"config.json: not valid JSON: .* line 1"):
        load_model(broken)
    with pytest.raises(CatalogError, match="expected a JSON object"):
        model_from_hf_config(_write(tmp_path / "list.json", [1, 2]))
    with pytest.raises(CatalogError, match="missing.json: no such file"):
        load_model(str(tmp_path / "missing.json"))


def test_hf_config_semantic_errors_name_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "config.json", LLAMA_31_8B | {"num_key_value_heads": 5})
    with pytest.raises(CatalogError, match=r"config.json: model .* not a multiple of num_kv_heads"):
        model_from_hf_config(path)

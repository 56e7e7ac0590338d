"""Build a ModelSpec from a HuggingFace config.json, so any published model can be simulated.

Only the standard keys are read (see `model_from_hf_config`). Every problem in the file is
reported at once, each naming the file and the key.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from servesim.hwmodels.dtypes import canonical_dtype, known_dtypes
from servesim.hwmodels.errors import CatalogError
from servesim.hwmodels.model_spec import ModelSpec
from servesim.hwmodels.strict_parsing import DuplicateKeyError, unique_keys

MAX_ARCHITECTURE_INT = 2**40  # far above any real size or count, far below float overflow in byte sums

# Qwen2 projects Q/K/V with a bias but its config.json has no `attention_bias` key.
_QKV_BIAS_MODEL_TYPES = frozenset({"qwen2", "qwen2_moe"})


class _ConfigReader:
    """Typed access to a config dict that collects problems instead of stopping at the first."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.problems: list[str] = []

    def integer(self, *keys: str, default: int | None = None) -> int:
        """The first of `keys` present (null counts as absent), else `default`; None = required."""
        for key in keys:
            value = self.config.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                self.problems.append(f"{key} must be an integer, got {value!r}")
                return 0
            if abs(value) > MAX_ARCHITECTURE_INT:
                digits = len(str(abs(value)))
                self.problems.append(f"{key} is a {digits}-digit number, beyond any real model (at most 2^40)")
                return 0
            return value
        if default is None:
            alternatives = f" (or {', '.join(keys[1:])})" if len(keys) > 1 else ""
            self.problems.append(f"missing required key {keys[0]!r}{alternatives}")
            return 0
        return default

    def flag(self, key: str, default: bool) -> bool:
        value = self.config.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.problems.append(f"{key} must be true or false, got {value!r}")
            return default
        return value

    def dtype(self) -> str:
        key = "torch_dtype" if "torch_dtype" in self.config else "dtype"
        value = self.config.get(key)
        if value is None:
            return "bf16"
        dtype = canonical_dtype(value) if isinstance(value, str) else None
        if dtype is None:
            self.problems.append(f"{key} must be one of {known_dtypes()} (or their torch names), got {value!r}")
            return "bf16"
        return dtype


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in `path`; a CatalogError names the file and what is wrong with it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CatalogError(
            f"{path}: no such file (expected a HuggingFace config.json; servesim never downloads one)"
        ) from None
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        config = json.loads(text, object_pairs_hook=unique_keys)
    except DuplicateKeyError as exc:
        raise CatalogError(f"{path}: {exc} (JSON readers silently keep the last value)") from None
    except json.JSONDecodeError as exc:
        raise CatalogError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    if not isinstance(config, dict):
        raise CatalogError(f"{path}: expected a JSON object of config keys, got {type(config).__name__}")
    return config


def model_from_hf_config(path: str | Path) -> ModelSpec:
    """A ModelSpec from a config.json file (or a directory holding one).

    Keys: num_hidden_layers, hidden_size, num_attention_heads, num_key_value_heads (default: the
    attention heads), head_dim (default hidden/heads; MLA: qk_nope + qk_rope), intermediate_size,
    vocab_size, max_position_embeddings, torch_dtype (default bf16; `quantization_config` with
    quant_method fp8 makes the weights fp8), num_local_experts / n_routed_experts / num_experts,
    num_experts_per_tok, moe_intermediate_size (default intermediate_size, as in Mixtral),
    n_shared_experts, first_k_dense_replace, q_lora_rank, kv_lora_rank, qk_nope_head_dim,
    qk_rope_head_dim, v_head_dim, attention_bias, tie_word_embeddings (default false).
    """
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    read = _ConfigReader(read_json_object(path))
    heads = read.integer("num_attention_heads")
    hidden = read.integer("hidden_size")
    kv_lora = read.integer("kv_lora_rank", default=0)
    nope = read.integer("qk_nope_head_dim", default=0)
    rope = read.integer("qk_rope_head_dim", default=0)
    num_experts = read.integer("num_local_experts", "n_routed_experts", "num_experts", default=0)
    first_dense = read.integer("first_k_dense_replace", default=0)
    needs_dense_mlp = num_experts == 0 or first_dense > 0
    intermediate = read.integer("intermediate_size", default=None if needs_dense_mlp else 0)
    dtype = read.dtype()
    quant = read.config.get("quantization_config")
    fp8_weights = isinstance(quant, dict) and str(quant.get("quant_method", "")).lower() == "fp8"
    fields: dict[str, Any] = dict(
        num_layers=read.integer("num_hidden_layers"),
        hidden_size=hidden,
        num_attention_heads=heads,
        num_kv_heads=read.integer("num_key_value_heads", default=heads),
        head_dim=read.integer("head_dim", default=nope + rope if kv_lora else hidden // max(heads, 1)),
        intermediate_size=intermediate,
        vocab_size=read.integer("vocab_size"),
        max_position_embeddings=read.integer("max_position_embeddings"),
        weight_dtype="fp8" if fp8_weights else dtype,
        kv_dtype=dtype,
        activation_dtype=dtype,
        tie_word_embeddings=read.flag("tie_word_embeddings", False),
        qkv_bias=read.flag("attention_bias", read.config.get("model_type") in _QKV_BIAS_MODEL_TYPES),
        num_experts=num_experts,
        experts_per_token=read.integer("num_experts_per_tok", default=0),
        moe_intermediate_size=read.integer("moe_intermediate_size", default=intermediate if num_experts else 0),
        num_shared_experts=read.integer("n_shared_experts", default=0),
        first_k_dense_layers=first_dense,
        q_lora_rank=read.integer("q_lora_rank", default=0),
        kv_lora_rank=kv_lora,
        qk_nope_head_dim=nope,
        qk_rope_head_dim=rope,
        v_head_dim=read.integer("v_head_dim", default=0),
    )
    if read.problems:
        raise CatalogError(f"{path}: " + "; ".join(read.problems))
    name = path.parent.name if path.name == "config.json" and path.parent.name else path.stem
    try:
        return ModelSpec(name=name, source=f"HuggingFace config.json at {path}", **fields)
    except CatalogError as exc:
        raise CatalogError(f"{path}: {exc}") from None

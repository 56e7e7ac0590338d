"""A model's architecture, and everything a simulator derives from it (parameters, bytes, FLOPs).

Only architecture fields are stored; parameter counts, weight and KV bytes are always derived, so
a catalog entry cannot disagree with itself.

Sharding approximations (used for memory sizing and by the operator model):
- TP splits attention heads, MLP columns and every expert evenly (ceil division per device);
  K/V heads split over TP but never below one head per device (replicated when tp > kv heads).
- MLA's down-projections (q_a, kv_a) and their norms are replicated across TP; its up-projections
  and output projection split by heads. MLA's compressed KV is replicated across TP.
- Embedding and LM head are vocab-parallel (split over TP). Norms and the MoE router replicate.
- PP splits layers contiguously (stage s holds layers [s*L//pp, (s+1)*L//pp)); the first stage
  also holds the embedding, the last the final norm and LM head (its own copy when tied and pp > 1).
- EP reuses the TP group's devices: experts are grouped over `ep` ranks and each group is sharded
  over tp/ep devices, so a device holds 1/tp of all expert weights either way.
- Linear-layer weights use `weight_dtype`; embeddings, LM head, norms and router use
  `activation_dtype` (as FP8 checkpoints such as DeepSeek-V3 keep them). int4 weights carry one
  bf16 scale per group of 128 (`dtypes.weight_element_bytes`); fp8's per-tensor or per-block
  scales are negligible and ignored, as are per-head q/k norms (Qwen3) and biases other than
  the QKV bias.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from servesim.hwmodels.dtypes import DTYPE_BYTES, WEIGHT_ONLY_DTYPES, weight_element_bytes
from servesim.hwmodels.errors import CatalogError
from servesim.hwmodels.shapes import ParallelPlan


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True, slots=True)
class LayerParams:
    """Parameter counts of one decoder layer's parts as held by one device of a TP group.

    `expert` is one routed expert's share on the device; `num_experts * expert` is the device's
    share of all routed experts however the group splits them.
    """

    qkv: int
    out: int
    norms: int
    mlp_gate_up: int
    mlp_down: int
    router: int
    expert: int
    shared_experts: int


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One model's architecture as its config.json describes it; `source` says where from.

    MoE fields are 0 for dense models; MLA fields (kv_lora_rank > 0) mark DeepSeek-style latent
    attention; `q_lora_rank = 0` means queries are not compressed.
    """

    name: str
    source: str
    num_layers: int
    hidden_size: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int
    weight_dtype: str
    kv_dtype: str
    activation_dtype: str
    tie_word_embeddings: bool = False
    qkv_bias: bool = False
    num_experts: int = 0
    experts_per_token: int = 0
    moe_intermediate_size: int = 0
    num_shared_experts: int = 0
    first_k_dense_layers: int = 0
    q_lora_rank: int = 0
    kv_lora_rank: int = 0
    qk_nope_head_dim: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0

    def __post_init__(self) -> None:
        problems = self._problems()
        if problems:
            raise CatalogError(f"model {self.name!r}: " + "; ".join(problems))

    def _problems(self) -> list[str]:
        problems = [
            f"{key} must be > 0, got {getattr(self, key)}"
            for key in ("num_layers", "hidden_size", "num_attention_heads", "num_kv_heads", "head_dim",
                        "vocab_size", "max_position_embeddings")
            if getattr(self, key) <= 0
        ]
        problems += [
            f"{key} must be >= 0, got {getattr(self, key)}"
            for key in ("intermediate_size", "num_experts", "experts_per_token", "moe_intermediate_size",
                        "num_shared_experts", "first_k_dense_layers", "q_lora_rank", "kv_lora_rank",
                        "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim")
            if getattr(self, key) < 0
        ]
        for key in ("weight_dtype", "kv_dtype", "activation_dtype"):
            if getattr(self, key) not in DTYPE_BYTES:
                problems.append(f"{key} must be one of {sorted(DTYPE_BYTES)}, got {getattr(self, key)!r}")
        problems += [f"{key} {getattr(self, key)!r} is a weight-only format; use one of "
                     f"{sorted(set(DTYPE_BYTES) - WEIGHT_ONLY_DTYPES)}"
                     for key in ("kv_dtype", "activation_dtype") if getattr(self, key) in WEIGHT_ONLY_DTYPES]
        if self.is_moe:
            if not 1 <= self.experts_per_token <= self.num_experts:
                problems.append(f"experts_per_token must be in 1..num_experts ({self.num_experts}), "
                                f"got {self.experts_per_token}")
            if self.moe_intermediate_size <= 0:
                problems.append("moe_intermediate_size must be > 0 for a MoE model")
            if self.first_k_dense_layers > self.num_layers:
                problems.append(f"first_k_dense_layers ({self.first_k_dense_layers}) exceeds "
                                f"num_layers ({self.num_layers})")
        if self.num_dense_layers > 0 and self.intermediate_size <= 0:
            problems.append("intermediate_size must be > 0 when the model has dense MLP layers")
        if self.uses_mla:
            problems += [f"{key} must be > 0 for MLA (kv_lora_rank > 0)"
                         for key in ("qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim") if getattr(self, key) <= 0]
        elif self.num_kv_heads > 0 and self.num_attention_heads % self.num_kv_heads:
            problems.append(f"num_attention_heads ({self.num_attention_heads}) is not a multiple of "
                            f"num_kv_heads ({self.num_kv_heads})")
        return problems

    def served_in(self, weight_dtype: str | None = None, kv_dtype: str | None = None) -> ModelSpec:
        """This model with its weights and/or KV cache in other formats (None keeps the model's)."""
        return replace(self, weight_dtype=weight_dtype or self.weight_dtype, kv_dtype=kv_dtype or self.kv_dtype)

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def uses_mla(self) -> bool:
        return self.kv_lora_rank > 0

    @property
    def num_dense_layers(self) -> int:
        return min(self.first_k_dense_layers, self.num_layers) if self.is_moe else self.num_layers

    @property
    def num_moe_layers(self) -> int:
        return self.num_layers - self.num_dense_layers

    def layer_params(self, tp: int = 1) -> LayerParams:
        """Per-layer parameter counts on one device of a `tp`-way tensor-parallel group."""
        h = self.hidden_size
        heads = ceil_div(self.num_attention_heads, tp)
        if self.uses_mla:
            qk_dim = self.qk_nope_head_dim + self.qk_rope_head_dim
            if self.q_lora_rank:
                q = h * self.q_lora_rank + self.q_lora_rank + self.q_lora_rank * heads * qk_dim
            else:
                q = h * heads * qk_dim
            kv = (h * (self.kv_lora_rank + self.qk_rope_head_dim) + self.kv_lora_rank
                  + self.kv_lora_rank * heads * (self.qk_nope_head_dim + self.v_head_dim))
            qkv, out = q + kv, heads * self.v_head_dim * h
        else:
            qkv_heads = heads + 2 * self.kv_heads_per_device(tp)
            qkv = qkv_heads * self.head_dim * (h + int(self.qkv_bias))
            out = heads * self.head_dim * h
        inter = ceil_div(self.intermediate_size, tp)
        moe_inter = ceil_div(self.moe_intermediate_size, tp)
        return LayerParams(
            qkv=qkv,
            out=out,
            norms=2 * h,
            mlp_gate_up=2 * h * inter,
            mlp_down=inter * h,
            router=h * self.num_experts,
            expert=3 * h * moe_inter,
            shared_experts=self.num_shared_experts * 3 * h * moe_inter,
        )

    def kv_heads_per_device(self, tp: int) -> int:
        """K/V heads each device holds: split over TP, replicated once tp exceeds them."""
        return ceil_div(self.num_kv_heads, tp)

    @property
    def num_params(self) -> int:
        """Total parameters (all experts), without multi-token-prediction heads."""
        return self._count_params(self.num_experts)

    @property
    def num_active_params(self) -> int:
        """Parameters one token touches: shared parts plus `experts_per_token` routed experts."""
        return self._count_params(self.experts_per_token)

    def _count_params(self, experts: int) -> int:
        p = self.layer_params(1)
        embed = self.vocab_size * self.hidden_size
        lm_head = 0 if self.tie_word_embeddings else embed
        moe = p.router + experts * p.expert + p.shared_experts
        return (embed + lm_head + self.hidden_size + self.num_layers * (p.qkv + p.out + p.norms)
                + self.num_dense_layers * (p.mlp_gate_up + p.mlp_down) + self.num_moe_layers * moe)

    @property
    def weight_bytes(self) -> int:
        """Bytes of all weights on a single device (no parallelism)."""
        return self.weight_bytes_per_device(ParallelPlan())

    def weight_bytes_per_device(self, plan: ParallelPlan) -> int:
        """Weight bytes of the fullest device under `plan` (see the module notes on sharding)."""
        w, a = weight_element_bytes(self.weight_dtype), DTYPE_BYTES[self.activation_dtype]
        p = self.layer_params(plan.tp)
        embed = ceil_div(self.vocab_size, plan.tp) * self.hidden_size * a
        dense = (p.mlp_gate_up + p.mlp_down) * w
        moe = (self.num_experts * p.expert + p.shared_experts) * w + p.router * a
        fullest = 0.0
        for stage, (lo, hi) in enumerate(self.stage_layers(plan.pp)):
            num_dense = max(0, min(hi, self.num_dense_layers) - lo)
            total = (hi - lo) * ((p.qkv + p.out) * w + p.norms * a) + num_dense * dense + (hi - lo - num_dense) * moe
            if stage == 0:
                total += embed
            if stage == plan.pp - 1:
                total += self.hidden_size * a + (embed if plan.pp > 1 or not self.tie_word_embeddings else 0)
            fullest = max(fullest, total)
        return math.ceil(fullest)

    def stage_layers(self, pp: int) -> list[tuple[int, int]]:
        """The [first, end) layer range of each pipeline stage."""
        return [(s * self.num_layers // pp, (s + 1) * self.num_layers // pp) for s in range(pp)]

    def kv_elements_per_layer(self, tp: int = 1) -> int:
        """KV-cache elements per token per layer on one device: K and V heads, or MLA's latent."""
        if self.uses_mla:
            return self.kv_lora_rank + self.qk_rope_head_dim
        return 2 * self.kv_heads_per_device(tp) * self.head_dim

    @property
    def kv_bytes_per_token(self) -> int:
        return int(self.num_layers * self.kv_elements_per_layer(1) * DTYPE_BYTES[self.kv_dtype])

    def kv_bytes_per_token_per_device(self, plan: ParallelPlan) -> int:
        """KV bytes per token on the fullest device: its K/V heads, times its stage's layers."""
        layers = ceil_div(self.num_layers, plan.pp)
        return int(layers * self.kv_elements_per_layer(plan.tp) * DTYPE_BYTES[self.kv_dtype])

    def flops_per_token(self, context_len: int) -> float:
        """Forward FLOPs of one token attending to `context_len` positions.

        2 x active matmul parameters (the embedding lookup is free; a tied table counts as the
        LM head), plus QK and PV products over the context (MLA in its non-absorbed form).
        """
        lookup = 0 if self.tie_word_embeddings else self.vocab_size * self.hidden_size
        if self.uses_mla:
            qk_dim, v_dim = self.qk_nope_head_dim + self.qk_rope_head_dim, self.v_head_dim
        else:
            qk_dim = v_dim = self.head_dim
        attention = 2 * self.num_attention_heads * (qk_dim + v_dim) * context_len * self.num_layers
        return 2.0 * (self.num_active_params - lookup) + attention

"""One iteration of a batch as operator invocations, each with its FLOPs and bytes per device.

This is the single place that knows what a forward pass does; cost models only price the list.
Conventions and approximations:
- A multiply-add is 2 FLOPs; element-wise operators (norms, rotary, activation, sampling) get a
  few FLOPs per element, which never matters because they are memory-bound.
- Bytes = weights read once per call (in `weight_dtype`, int4 group scales included) +
  activations read and written once (no fusion) + KV cache read or written (in `kv_dtype`).
  Attention reads each attended K/V position once per sequence (ideal tiling).
- Per-layer operators have `calls` = the layers they occur in, summed over pipeline stages: with
  PP the stages run one after another (microbatch overlap is not modelled) plus pp-1 send/recvs
  of hidden state and residual.
- TP: two all-reduces of the hidden state per layer; the embedding's all-reduce and the gather of
  logits are not modelled. EP (ep divides tp): a dispatch and a combine all-to-all per MoE layer.
- MoE routing is uniform by default: T tokens picking k of E experts touch E(1-(1-k/E)^T) distinct
  experts on average, and each touched expert's weights are read once. With an `ExpertRouting`
  (`hwmodels.moe_routing`) the experts' work is the most loaded EP rank's; with an expert cache
  (`hwmodels.expert_cache`) the experts missing from device memory are first copied from the host.
- Every batch entry samples a token (LM head and sampling run for all entries), which slightly
  overcounts intermediate prefill chunks.
- Decode attention is one paged kernel over all decodes, each decode reading at least a tile of
  KV positions when the cost model gives one; prefill attention is priced per chunk
  (each chunk its own roofline, no overlap between chunks), which keeps the cost monotone when a
  decode becomes a two-token chunk.
- MLA decodes in the absorbed-weights form over the compressed cache; MLA prefill decompresses
  the cached context (kv_b up-projection) and runs ordinary attention.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np

from servesim.hwmodels.dtypes import DTYPE_BYTES, weight_element_bytes
from servesim.hwmodels.expert_cache import ExpertCacheEstimate
from servesim.hwmodels.model_spec import ModelSpec, ceil_div
from servesim.hwmodels.moe_routing import ExpertRouting
from servesim.hwmodels.shapes import BatchShape, ParallelPlan

LOGIT_BYTES = 4  # logits and router scores are float32

# Operators that run once per decoder layer, in this order inside a layer; the others run once
# per iteration before the layers (overhead, embedding) or after them (LM head, sampling).
LAYER_OPERATORS = (
    "input_norm", "attn_qkv_proj", "attn_rope", "kv_cache_write", "attn_prefill", "attn_decode",
    "attn_out_proj", "tp_all_reduce", "post_norm", "mlp_gate_up", "mlp_act", "mlp_down", "moe_router",
    "ep_all_to_all", "moe_expert_load", "moe_experts", "moe_shared_experts", "moe_combine",
)


class OpKind(Enum):
    COMPUTE = "compute"
    ALL_REDUCE = "all_reduce"
    SEND_RECV = "send_recv"
    ALL_TO_ALL = "all_to_all"
    HOST_COPY = "host_copy"
    OVERHEAD = "overhead"


@dataclass(frozen=True, slots=True)
class Operator:
    """One operator invocation on one device: work per call, and how many calls.

    `weight_gemm` marks matmuls against the model's linear weights (they run at the compute
    format's rate); for collectives `bytes_moved` is the message per device and `group` the
    number of devices taking part. When ops are built for a numpy array of token or entry
    counts, `flops` and `bytes_moved` are arrays over those counts.
    """

    name: str
    calls: int
    flops: float | np.ndarray
    bytes_moved: float | np.ndarray
    kind: OpKind = OpKind.COMPUTE
    weight_gemm: bool = False
    group: int = 1


@dataclass(frozen=True, slots=True)
class AttentionWork:
    """Per-layer, per-device attention work in closed form.

    Decode work is affine in two batch aggregates: a decode attends to its context plus its new
    token, so `nd` decodes with context sum `sd` attend `sd + nd` positions (plain arithmetic,
    so numpy arrays work too). A prefill chunk of n new tokens after c cached ones has
    n*c + n(n+1)/2 causal query-key pairs and reads c + n positions. `decode_query_bytes` is
    per decode: its query and output, plus the KV tile it reads at least.
    """

    decode_pair_flops: float
    decode_position_bytes: float
    decode_query_bytes: float
    prefill_pair_flops: float
    prefill_context_flops: float
    prefill_position_bytes: float
    prefill_context_bytes: float
    prefill_query_bytes: float

    def decode(self, num_decodes: Any, context_sum: Any) -> tuple[Any, Any]:
        positions = context_sum + num_decodes
        return (self.decode_pair_flops * positions,
                self.decode_position_bytes * positions + self.decode_query_bytes * num_decodes)

    def prefill(self, new_tokens: float,
                context_len: float | np.ndarray) -> tuple[float | np.ndarray, float | np.ndarray]:
        pairs = new_tokens * context_len + new_tokens * (new_tokens + 1) // 2
        flops = self.prefill_pair_flops * pairs + self.prefill_context_flops * context_len
        nbytes = (self.prefill_position_bytes * (context_len + new_tokens) + self.prefill_context_bytes * context_len
                  + self.prefill_query_bytes * new_tokens)
        return flops, nbytes


def attention_work(model: ModelSpec, tp: int, decode_tile_positions: float = 0.0) -> AttentionWork:
    """Attention coefficients for one device of a `tp`-way group (heads split over TP).

    `decode_tile_positions`: KV positions a decode reads at least (the kernel's tile, a property
    of the GPU's kernels that the cost model supplies), charged as bytes per decode.
    """
    heads = ceil_div(model.num_attention_heads, tp)
    act, kv = DTYPE_BYTES[model.activation_dtype], DTYPE_BYTES[model.kv_dtype]
    if not model.uses_mla:
        d = model.head_dim
        return AttentionWork(
            decode_pair_flops=4.0 * heads * d,
            decode_position_bytes=float(model.kv_elements_per_layer(tp) * kv),
            decode_query_bytes=2.0 * heads * d * act + decode_tile_positions * model.kv_elements_per_layer(tp) * kv,
            prefill_pair_flops=4.0 * heads * d,
            prefill_context_flops=0.0,
            prefill_position_bytes=float(model.kv_elements_per_layer(tp) * kv),
            prefill_context_bytes=0.0,
            prefill_query_bytes=2.0 * heads * d * act,
        )
    latent, rope = model.kv_lora_rank, model.qk_rope_head_dim
    nope, v = model.qk_nope_head_dim, model.v_head_dim
    return AttentionWork(
        decode_pair_flops=2.0 * heads * (latent + rope) + 2.0 * heads * latent,
        decode_position_bytes=float((latent + rope) * kv),
        decode_query_bytes=float(heads * (2 * latent + rope) * act + decode_tile_positions * (latent + rope) * kv),
        prefill_pair_flops=2.0 * heads * (nope + rope) + 2.0 * heads * v,
        prefill_context_flops=2.0 * latent * heads * (nope + v),
        prefill_position_bytes=float(heads * (nope + rope + v) * act),
        prefill_context_bytes=float((latent + rope) * kv + heads * (nope + v) * act),
        prefill_query_bytes=float(heads * (nope + rope + v) * act),
    )


class OperatorBuilder:
    """Builds the operator invocations of one iteration of one model under one parallel plan."""

    def __init__(self, model: ModelSpec, plan: ParallelPlan, decode_tile_positions: float = 0.0,
                 routing: ExpertRouting | None = None, cache: ExpertCacheEstimate | None = None) -> None:
        if min(plan.tp, plan.pp, plan.ep) < 1:
            raise ValueError(f"parallel plan {plan}: tp, pp and ep must be >= 1")
        if plan.ep > 1 and (not model.is_moe or plan.tp % plan.ep):
            raise ValueError(
                f"parallel plan {plan}: ep > 1 needs a MoE model and must divide tp (EP reuses the TP group)"
            )
        if routing is not None and routing.num_ranks != plan.ep:
            raise ValueError(f"expert routing over {routing.num_ranks} ranks under a plan with ep={plan.ep}")
        self.model, self.plan = model, plan
        self.routing, self.cache = routing, cache
        self.params = model.layer_params(plan.tp)
        self.attention = attention_work(model, plan.tp, decode_tile_positions)
        self._weight = weight_element_bytes(model.weight_dtype)
        self._act = DTYPE_BYTES[model.activation_dtype]
        self._kv = DTYPE_BYTES[model.kv_dtype]
        self._heads = ceil_div(model.num_attention_heads, plan.tp)
        self._inter = ceil_div(model.intermediate_size, plan.tp)
        self._moe_inter = ceil_div(model.moe_intermediate_size, plan.tp)
        self._vocab = ceil_div(model.vocab_size, plan.tp)
        if model.uses_mla:
            qk = model.qk_nope_head_dim + model.qk_rope_head_dim
            self._qkv_width = self._heads * qk + model.kv_lora_rank + model.qk_rope_head_dim
            self._rope_width = (self._heads + 1) * model.qk_rope_head_dim
            self._attn_out_width = self._heads * model.v_head_dim
        else:
            kv_heads = model.kv_heads_per_device(plan.tp)
            self._qkv_width = (self._heads + 2 * kv_heads) * model.head_dim
            self._rope_width = (self._heads + kv_heads) * model.head_dim
            self._attn_out_width = self._heads * model.head_dim

    def iteration_ops(self, batch: BatchShape) -> list[Operator]:
        """Every operator of one iteration, in execution order."""
        t = batch.num_tokens
        return (self._head_ops(t) + self._pre_attention_ops(t) + self.attention_ops(batch)
                + self._post_attention_ops(t) + self._tail_ops(t) + self.entry_ops(batch.num_entries))

    def token_ops(self, num_tokens: Any) -> list[Operator]:
        """The operators whose work depends only on the new-token count (an int or an array)."""
        t = num_tokens
        return self._head_ops(t) + self._pre_attention_ops(t) + self._post_attention_ops(t) + self._tail_ops(t)

    def entry_ops(self, num_entries: Any) -> list[Operator]:
        """LM head and sampling for `num_entries` sampling entries (an int or an array)."""
        s, h, v = num_entries, self.model.hidden_size, self._vocab
        return [
            Operator("lm_head", 1, 2.0 * s * h * v, v * h * self._act + s * h * self._act + s * v * LOGIT_BYTES),
            Operator("sampling", 1, 5.0 * s * self.model.vocab_size, 2.0 * s * self.model.vocab_size * LOGIT_BYTES),
        ]

    def attention_ops(self, batch: BatchShape) -> list[Operator]:
        """One `attn_prefill` per prefill chunk, then one `attn_decode` for all decodes."""
        layers = self.model.num_layers
        ops = [Operator("attn_prefill", layers, *self.attention.prefill(n, c)) for n, c in batch.prefill_chunks()]
        decode_contexts = batch.decode_context_lens()
        if decode_contexts:
            flops, nbytes = self.attention.decode(len(decode_contexts), sum(decode_contexts))
            ops.append(Operator("attn_decode", layers, flops, nbytes))
        return ops

    def _head_ops(self, t: int) -> list[Operator]:
        return [
            Operator("cpu_overhead", 1, 0.0, 0.0, OpKind.OVERHEAD),
            Operator("embedding", 1, 0.0, 2.0 * t * self.model.hidden_size * self._act),
        ]

    def _norm(self, name: str, t: int) -> Operator:
        h = self.model.hidden_size
        return Operator(name, self.model.num_layers, 4.0 * t * h, (2.0 * t * h + h) * self._act)

    def _pre_attention_ops(self, t: int) -> list[Operator]:
        p, layers, h, act = self.params, self.model.num_layers, self.model.hidden_size, self._act
        kv_width = self.model.kv_elements_per_layer(self.plan.tp)
        return [
            self._norm("input_norm", t),
            Operator("attn_qkv_proj", layers, 2.0 * t * p.qkv, p.qkv * self._weight + t * (h + self._qkv_width) * act,
                     weight_gemm=True),
            Operator("attn_rope", layers, 3.0 * t * self._rope_width, 2.0 * t * self._rope_width * act),
            Operator("kv_cache_write", layers, 0.0, t * kv_width * (act + self._kv)),
        ]

    def _post_attention_ops(self, t: int) -> list[Operator]:
        p, layers, h, act = self.params, self.model.num_layers, self.model.hidden_size, self._act
        all_reduce = self._all_reduce(t, layers)
        ops = [
            Operator("attn_out_proj", layers, 2.0 * t * p.out,
                     p.out * self._weight + t * (self._attn_out_width + h) * act, weight_gemm=True),
            *all_reduce,
            self._norm("post_norm", t),
        ]
        if self.model.num_dense_layers:
            ops += self._dense_mlp_ops(t)
        if self.model.num_moe_layers:
            ops += self._moe_ops(t)
        return ops + all_reduce

    def _all_reduce(self, t: int, calls: int) -> list[Operator]:
        if self.plan.tp == 1:
            return []
        nbytes = t * self.model.hidden_size * self._act
        return [Operator("tp_all_reduce", calls, 0.0, nbytes, OpKind.ALL_REDUCE, group=self.plan.tp)]

    def _dense_mlp_ops(self, t: int) -> list[Operator]:
        p, layers, h = self.params, self.model.num_dense_layers, self.model.hidden_size
        w, act, inter = self._weight, self._act, self._inter
        return [
            Operator("mlp_gate_up", layers, 2.0 * t * p.mlp_gate_up, p.mlp_gate_up * w + t * (h + 2 * inter) * act,
                     weight_gemm=True),
            Operator("mlp_act", layers, 4.0 * t * inter, 3.0 * t * inter * act),
            Operator("mlp_down", layers, 2.0 * t * p.mlp_down, p.mlp_down * w + t * (inter + h) * act,
                     weight_gemm=True),
        ]

    def _moe_ops(self, t: int) -> list[Operator]:
        m, p, act = self.model, self.params, self._act
        layers, h, k, experts = m.num_moe_layers, m.hidden_size, m.experts_per_token, m.num_experts
        touched: Any
        pairs: Any
        if self.routing is None:
            touched, pairs = experts * (1.0 - (1.0 - k / experts) ** t), t * k
        else:  # the most loaded rank, its experts sharded over tp/ep devices: ep x a balanced device's share
            ep = self.plan.ep
            touched, pairs = ep * self.routing.max_rank_touched(t), ep * self.routing.max_rank_pairs(t)
        expert_act = pairs * (2 * h + 3 * self._moe_inter) * act
        router_bytes = p.router * act + t * h * act + t * experts * LOGIT_BYTES
        ops = [Operator("moe_router", layers, 2.0 * t * p.router, router_bytes)]
        ops += self._all_to_all(t, layers)
        if self.cache is not None:
            loaded = self.cache.misses(t) * p.expert * self._weight
            ops.append(Operator("moe_expert_load", layers, 0.0, loaded, OpKind.HOST_COPY))
        expert_bytes = touched * p.expert * self._weight + expert_act
        ops.append(Operator("moe_experts", layers, 2.0 * pairs * p.expert, expert_bytes, weight_gemm=True))
        if m.num_shared_experts:
            shared_act = t * (2 * h + 3 * m.num_shared_experts * self._moe_inter) * act
            ops.append(Operator("moe_shared_experts", layers, 2.0 * t * p.shared_experts,
                                p.shared_experts * self._weight + shared_act, weight_gemm=True))
        ops += self._all_to_all(t, layers)
        ops.append(Operator("moe_combine", layers, 2.0 * t * k * h, t * (k + 1) * h * act))
        return ops

    def _all_to_all(self, t: int, calls: int) -> list[Operator]:
        if self.plan.ep == 1:
            return []
        nbytes = t * self.model.experts_per_token * self.model.hidden_size * self._act / self.plan.ep
        return [Operator("ep_all_to_all", calls, 0.0, nbytes, OpKind.ALL_TO_ALL, group=self.plan.ep)]

    def _tail_ops(self, t: int) -> list[Operator]:
        if self.plan.pp == 1:
            return []
        nbytes = 2.0 * t * self.model.hidden_size * self._act
        return [Operator("pp_send_recv", self.plan.pp - 1, 0.0, nbytes, OpKind.SEND_RECV, group=2)]

"""A Llama-architecture model with random weights, built from the profiler's own kernels.

Its forward pass runs one iteration of a continuous batch in vLLM's flattened layout: prefill
chunks first, then decodes, all new tokens in one `[tokens, hidden]` matrix; K and V go to a
paged cache. Weights are random (outputs are meaningless, times are real): the point is that
every kernel is a `profiler.ops` function, the same one the profiler timed.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from servesim.hwmodels.model_spec import ModelSpec
from servesim.profiler import ops


@dataclass(frozen=True)
class ForwardBatch:
    """One iteration's inputs. `chunks` are the prefill entries' (new tokens, prior context),
    `decode_contexts` the decodes' contexts; rows of `token_ids` follow the same order."""

    token_ids: torch.Tensor
    positions: torch.Tensor
    slots: torch.Tensor
    prefill_tables: torch.Tensor
    decode_tables: torch.Tensor
    chunks: tuple[tuple[int, int], ...]
    decode_contexts: tuple[int, ...]
    last_rows: torch.Tensor
    """Row of each entry's last new token: its hidden state is sampled."""


@dataclass
class LayerWeights:
    input_norm: torch.Tensor
    qkv: torch.Tensor
    out: torch.Tensor
    post_norm: torch.Tensor
    gate_up: torch.Tensor
    down: torch.Tensor


class ReferenceModel:
    """A dense Llama model (GQA, RoPE, RMSNorm, SiLU-gated MLP) on one device, with its KV cache."""

    def __init__(self, spec: ModelSpec, device: torch.device, dtype: torch.dtype, num_blocks: int, block_size: int,
                 seed: int = 0) -> None:
        if spec.is_moe or spec.uses_mla:
            raise ValueError(f"the reference engine runs dense Llama-style models; {spec.name} is MoE or uses MLA")
        self.spec, self.device, self.dtype, self.block_size = spec, device, dtype, block_size
        gen = torch.Generator(device="cpu").manual_seed(seed)
        h, d = spec.hidden_size, spec.head_dim
        self.q_width, self.kv_width = spec.num_attention_heads * d, spec.num_kv_heads * d

        def rand(*shape: int) -> torch.Tensor:
            return (torch.randn(*shape, generator=gen) * shape[-1] ** -0.5).to(device, dtype)

        self.embedding = rand(spec.vocab_size, h)
        self.layers = [
            LayerWeights(torch.ones(h, device=device, dtype=dtype), rand(self.q_width + 2 * self.kv_width, h),
                         rand(h, self.q_width), torch.ones(h, device=device, dtype=dtype),
                         rand(2 * spec.intermediate_size, h), rand(h, spec.intermediate_size))
            for _ in range(spec.num_layers)
        ]
        self.final_norm = torch.ones(h, device=device, dtype=dtype)
        self.lm_head = rand(spec.vocab_size, h)
        shape = (num_blocks, block_size, spec.num_kv_heads, d)
        self.k_cache = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(spec.num_layers)]
        self.v_cache = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(spec.num_layers)]
        self.rope = ops.rope_cache(spec.max_position_embeddings, d, device, dtype)
        self.sampler = torch.Generator(device=device).manual_seed(seed)

    @torch.inference_mode()
    def warm_up(self, max_tokens: int, max_entries: int) -> None:
        """Run every GEMM shape serving can meet once, before serving.

        oneDNN (torch's CPU GEMMs) builds a kernel per shape on first use, which costs more than
        the GEMM itself for small models; the profiler's warm-up calls hide that cost, so the
        engine pays it up front too, as a GPU engine captures its CUDA graphs before serving.
        """
        layer = self.layers[0]
        weights = (layer.qkv, layer.out, layer.gate_up, layer.down)
        for count in range(1, max_tokens + 1):
            for weight in weights:
                ops.linear(torch.zeros(count, weight.shape[1], device=self.device, dtype=self.dtype), weight)
        for count in range(1, max_entries + 1):
            ops.lm_head(torch.zeros(count, self.spec.hidden_size, device=self.device, dtype=self.dtype),
                        self.final_norm, self.lm_head)

    @staticmethod
    def cache_bytes(spec: ModelSpec, num_blocks: int, block_size: int, dtype: torch.dtype) -> int:
        return 2 * spec.num_layers * num_blocks * block_size * spec.num_kv_heads * spec.head_dim * dtype.itemsize

    @torch.inference_mode()
    def forward(self, batch: ForwardBatch) -> list[int]:
        """Run one iteration and return one sampled token per entry (prefills first, then decodes)."""
        spec, d = self.spec, self.spec.head_dim
        num_prefill = sum(n for n, _ in batch.chunks)
        x = ops.embedding(batch.token_ids, self.embedding)
        residual: torch.Tensor | None = None
        for layer, k_cache, v_cache in zip(self.layers, self.k_cache, self.v_cache, strict=True):
            hidden, residual = ops.add_rms_norm(x, residual, layer.input_norm)
            q, k, v = ops.linear(hidden, layer.qkv).split([self.q_width, self.kv_width, self.kv_width], dim=-1)
            q, k = ops.rope(q.view(-1, spec.num_attention_heads, d), k.view(-1, spec.num_kv_heads, d),
                            batch.positions, self.rope)
            ops.kv_cache_write(k, v.view(-1, spec.num_kv_heads, d), k_cache, v_cache, batch.slots)
            parts = []
            if batch.chunks:
                parts.append(ops.attention_prefill(q[:num_prefill], k_cache, v_cache, batch.prefill_tables,
                                                   batch.chunks))
            if batch.decode_contexts:
                parts.append(ops.attention_decode(q[num_prefill:], k_cache, v_cache, batch.decode_tables,
                                                  batch.decode_contexts))
            attention = parts[0] if len(parts) == 1 else torch.cat(parts)
            x = ops.linear(attention.reshape(-1, self.q_width), layer.out)
            hidden, residual = ops.add_rms_norm(x, residual, layer.post_norm)
            x = ops.linear(ops.silu_and_mul(ops.linear(hidden, layer.gate_up)), layer.down)
        last = (x if residual is None else x + residual)[batch.last_rows]
        logits = ops.lm_head(last, self.final_norm, self.lm_head)
        return ops.sample(logits, self.sampler).tolist()

"""The torch kernels of one Llama-style iteration, one function per servesim operator.

The profiler times these functions and the reference engine's model is built from them, so a
profiled table and the engine it is checked against run the very same code. Shapes follow
vLLM's flattened layout: the new tokens of every batch entry are concatenated into one
`[tokens, hidden]` matrix, and the KV cache is paged, `[num_blocks, block_size, kv_heads,
head_dim]` per layer, addressed through block tables.

Attention uses flash-attn's variable-length kernel on CUDA when it is installed, and torch's
scaled_dot_product_attention otherwise, one call per sequence (so its cost follows each
sequence's own context, as a paged kernel's does, not the batch's longest).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

try:  # optional, CUDA only
    from flash_attn import flash_attn_varlen_func
except ImportError:
    flash_attn_varlen_func = None

EPS = 1e-5


def use_flash(device: torch.device) -> bool:
    return flash_attn_varlen_func is not None and device.type == "cuda"


def embedding(token_ids: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return F.embedding(token_ids, weight)


def add_rms_norm(x: torch.Tensor, residual: torch.Tensor | None,
                 weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Residual add fused with RMSNorm (as vLLM's fused_add_rms_norm): (normed, new residual)."""
    if residual is not None:
        x = x + residual
    variance = x.float().pow(2).mean(-1, keepdim=True)
    return (x.float() * torch.rsqrt(variance + EPS)).to(x.dtype) * weight, x


def linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return F.linear(x, weight)


def rope_cache(max_positions: int, head_dim: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """[positions, head_dim] of cos (first half) and sin (second half), base 10000."""
    inv = 1.0 / (10000 ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(max_positions, device=device, dtype=torch.float32), inv)
    return torch.cat([angles.cos(), angles.sin()], dim=-1).to(dtype)


def rope(q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor,
         cache: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary embedding (rotate-half form) of q [T, H, d] and k [T, Hkv, d] at `positions`."""
    cos, sin = cache[positions].unsqueeze(1).chunk(2, dim=-1)

    def rotate(x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)

    return rotate(q), rotate(k)


def kv_cache_write(k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                   slots: torch.Tensor) -> None:
    """Store the new tokens' K and V [T, Hkv, d] at their cache slots (block * block_size + offset)."""
    k_cache.view(-1, *k.shape[1:]).index_copy_(0, slots, k)
    v_cache.view(-1, *v.shape[1:]).index_copy_(0, slots, v)


def _gather(cache: torch.Tensor, block_table: torch.Tensor, length: int) -> torch.Tensor:
    """The first `length` cached positions of one sequence, [length, Hkv, d]."""
    block_size = cache.shape[1]
    blocks = block_table[: -(-length // block_size)]
    return cache[blocks].flatten(0, 1)[:length]


def attention_prefill(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, block_tables: torch.Tensor,
                      chunks: Sequence[tuple[int, int]]) -> torch.Tensor:
    """Causal attention of prefill chunks [sum n, H, d]; chunk i has n_i new tokens after c_i cached
    (its own K/V already written), so it attends to c_i + n_i positions, bottom-right causal."""
    if use_flash(q.device):
        return _flash(q, k_cache, v_cache, block_tables, chunks)
    outputs, start = [], 0
    for i, (new, context) in enumerate(chunks):
        total = context + new
        k = _gather(k_cache, block_tables[i], total).transpose(0, 1).unsqueeze(0)
        v = _gather(v_cache, block_tables[i], total).transpose(0, 1).unsqueeze(0)
        qi = q[start:start + new].transpose(0, 1).unsqueeze(0)
        mask = None if context == 0 else torch.ones(new, total, dtype=torch.bool, device=q.device).tril(context)
        out = F.scaled_dot_product_attention(qi, k, v, attn_mask=mask, is_causal=context == 0, enable_gqa=True)
        outputs.append(out.squeeze(0).transpose(0, 1))
        start += new
    return torch.cat(outputs)


def attention_decode(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, block_tables: torch.Tensor,
                     context_lens: Sequence[int]) -> torch.Tensor:
    """One new token per sequence, q [B, H, d], attending to its context plus itself (already written)."""
    if use_flash(q.device):
        return _flash(q, k_cache, v_cache, block_tables, [(1, c) for c in context_lens])
    outputs = []
    for i, context in enumerate(context_lens):
        k = _gather(k_cache, block_tables[i], context + 1).transpose(0, 1).unsqueeze(0)
        v = _gather(v_cache, block_tables[i], context + 1).transpose(0, 1).unsqueeze(0)
        out = F.scaled_dot_product_attention(q[i:i + 1].transpose(0, 1).unsqueeze(0), k, v, enable_gqa=True)
        outputs.append(out.squeeze(0).transpose(0, 1))
    return torch.cat(outputs)


def _flash(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, block_tables: torch.Tensor,
           chunks: Sequence[tuple[int, int]]) -> torch.Tensor:
    """flash-attn varlen over K/V gathered from the paged cache (any block size)."""
    keys = [_gather(k_cache, block_tables[i], c + n) for i, (n, c) in enumerate(chunks)]
    values = [_gather(v_cache, block_tables[i], c + n) for i, (n, c) in enumerate(chunks)]
    q_lens = torch.tensor([0] + [n for n, _ in chunks], device=q.device, dtype=torch.int32)
    k_lens = torch.tensor([0] + [n + c for n, c in chunks], device=q.device, dtype=torch.int32)
    return flash_attn_varlen_func(
        q, torch.cat(keys), torch.cat(values), q_lens.cumsum(0, dtype=torch.int32), k_lens.cumsum(0, dtype=torch.int32),
        max(n for n, _ in chunks), max(n + c for n, c in chunks), causal=True,
    )


def silu_and_mul(gate_up: torch.Tensor) -> torch.Tensor:
    gate, up = gate_up.chunk(2, dim=-1)
    return F.silu(gate) * up


def moe_route(x: torch.Tensor, router: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Router GEMM, softmax and top-k: (weights [T, k], expert ids [T, k])."""
    scores = torch.softmax(F.linear(x, router).float(), dim=-1)
    weights, experts = scores.topk(top_k, dim=-1)
    return (weights / weights.sum(-1, keepdim=True)).to(x.dtype), experts


def moe_experts(x: torch.Tensor, experts: torch.Tensor, gate_up: Sequence[torch.Tensor],
                down: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Each touched expert's gated MLP over its tokens: outputs [T*k, h] in (token, slot) order
    and the token of each output row."""
    flat = experts.flatten()
    order = flat.argsort()
    counts = torch.bincount(flat, minlength=len(gate_up)).tolist()
    tokens = order // experts.shape[1]
    outputs = torch.empty(flat.numel(), x.shape[1], dtype=x.dtype, device=x.device)
    start = 0
    for expert, count in enumerate(counts):
        if count:
            rows = order[start:start + count]
            hidden = silu_and_mul(F.linear(x[tokens[start:start + count]], gate_up[expert]))
            outputs[rows] = F.linear(hidden, down[expert])
            start += count
    return outputs, torch.arange(flat.numel(), device=x.device) // experts.shape[1]


def moe_combine(outputs: torch.Tensor, token_of_row: torch.Tensor, weights: torch.Tensor,
                num_tokens: int) -> torch.Tensor:
    """Weighted sum of each token's expert outputs."""
    combined = torch.zeros(num_tokens, outputs.shape[1], dtype=outputs.dtype, device=outputs.device)
    return combined.index_add_(0, token_of_row, outputs * weights.flatten().unsqueeze(1))


def lm_head(x: torch.Tensor, norm_weight: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Final norm and the vocabulary projection of the sampled rows, logits in float32."""
    return linear(add_rms_norm(x, None, norm_weight)[0], weight).float()


def sample(logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Temperature-1 sampling from the softmax, one token per row."""
    return torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator).squeeze(1)


def copy_blocks(cache: torch.Tensor, src: torch.Tensor, dst: torch.Tensor) -> None:
    """Copy whole KV blocks inside one cache (copy-on-write of shared prefix blocks)."""
    cache.index_copy_(0, dst, cache.index_select(0, src))

"""Time each servesim operator of one model on one device at one shape.

`OperatorBench` holds the model's per-device dimensions under a tensor-parallel degree (the
sharded shapes run on one device, as Vidur does) and builds random inputs for each call of a
`profiler.ops` kernel. Inputs come in several copies that the timer rotates through.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from servesim.hwmodels.model_spec import ModelSpec, ceil_div
from servesim.profiler import ops
from servesim.profiler.timing import Timer

COPIES = 4
BLOCK_SIZE = 16


class OperatorBench:
    """Seconds per call of each operator for `model` sharded `tp` ways, on `timer.device`."""

    def __init__(self, model: ModelSpec, tp: int, dtype: torch.dtype, timer: Timer, seed: int = 0) -> None:
        self.model, self.tp, self.dtype, self.timer = model, tp, dtype, timer
        self.device = timer.device
        self.gen = torch.Generator(device="cpu").manual_seed(seed)
        self.heads = ceil_div(model.num_attention_heads, tp)
        self.kv_heads = model.kv_heads_per_device(tp)
        self.head_dim = model.head_dim
        self.hidden = model.hidden_size
        self.inter = ceil_div(model.intermediate_size, tp)
        self.moe_inter = ceil_div(model.moe_intermediate_size, tp)
        self.vocab = ceil_div(model.vocab_size, tp)
        self.qkv_width = (self.heads + 2 * self.kv_heads) * self.head_dim
        self._weights: dict[str, torch.Tensor] = {}
        self._rope = ops.rope_cache(model.max_position_embeddings, self.head_dim, self.device, dtype)

    def rand(self, *shape: int, dtype: torch.dtype | None = None) -> torch.Tensor:
        return torch.randn(*shape, generator=self.gen, dtype=torch.float32).to(self.device, dtype or self.dtype) * 0.05

    def weight(self, name: str, *shape: int) -> torch.Tensor:
        if name not in self._weights:
            self._weights[name] = self.rand(*shape)
        return self._weights[name]

    def _time(self, make: Callable[[], tuple], kernel: Callable[..., object]) -> float:
        inputs = [make() for _ in range(COPIES)]
        return self.timer.seconds(lambda i: kernel(*inputs[i % COPIES]))

    # ---- per-token operators ------------------------------------------------------------------

    def token_operator(self, name: str, t: int) -> float:
        """Seconds of one call of token operator `name` over `t` tokens (or entries)."""
        return getattr(self, f"_{name}")(t)

    def token_operator_names(self) -> list[str]:
        names = ["embedding", "input_norm", "attn_qkv_proj", "attn_rope", "kv_cache_write", "attn_out_proj",
                 "post_norm", "lm_head", "sampling"]
        if self.model.num_dense_layers:
            names += ["mlp_gate_up", "mlp_act", "mlp_down"]
        if self.model.is_moe:
            names += ["moe_router", "moe_experts", "moe_combine"]
        return names

    def _embedding(self, t: int) -> float:
        table = self.weight("embedding", self.vocab, self.hidden)
        return self._time(lambda: (torch.randint(0, self.vocab, (t,), generator=self.gen).to(self.device),),
                          lambda ids: ops.embedding(ids, table))

    def _norm(self, t: int) -> float:
        w = self.weight("norm", self.hidden)
        return self._time(lambda: (self.rand(t, self.hidden), self.rand(t, self.hidden)),
                          lambda x, r: ops.add_rms_norm(x, r, w))

    _input_norm = _post_norm = _norm

    def _gemm(self, name: str, t: int, n: int, k: int) -> float:
        w = self.weight(name, n, k)
        return self._time(lambda: (self.rand(t, k),), lambda x: ops.linear(x, w))

    def _attn_qkv_proj(self, t: int) -> float:
        return self._gemm("qkv", t, self.qkv_width, self.hidden)

    def _attn_out_proj(self, t: int) -> float:
        return self._gemm("out", t, self.hidden, self.heads * self.head_dim)

    def _mlp_gate_up(self, t: int) -> float:
        return self._gemm("gate_up", t, 2 * self.inter, self.hidden)

    def _mlp_down(self, t: int) -> float:
        return self._gemm("down", t, self.hidden, self.inter)

    def _mlp_act(self, t: int) -> float:
        return self._time(lambda: (self.rand(t, 2 * self.inter),), ops.silu_and_mul)

    def _attn_rope(self, t: int) -> float:
        def positions() -> torch.Tensor:
            return torch.randint(0, self.model.max_position_embeddings, (t,), generator=self.gen).to(self.device)

        return self._time(lambda: (self.rand(t, self.heads, self.head_dim), self.rand(t, self.kv_heads, self.head_dim),
                                   positions()),
                          lambda q, k, p: ops.rope(q, k, p, self._rope))

    def _kv_cache_write(self, t: int) -> float:
        num_blocks = ceil_div(t, BLOCK_SIZE) * COPIES + 1
        k_cache = self.rand(num_blocks, BLOCK_SIZE, self.kv_heads, self.head_dim)
        v_cache = torch.empty_like(k_cache)
        def slots() -> torch.Tensor:
            return torch.randperm(num_blocks * BLOCK_SIZE, generator=self.gen)[:t].to(self.device)

        return self._time(lambda: (self.rand(t, self.kv_heads, self.head_dim),
                                   self.rand(t, self.kv_heads, self.head_dim), slots()),
                          lambda k, v, s: ops.kv_cache_write(k, v, k_cache, v_cache, s))

    def _lm_head(self, s: int) -> float:
        w, norm = self.weight("lm_head", self.vocab, self.hidden), self.weight("norm", self.hidden)
        return self._time(lambda: (self.rand(s, self.hidden),), lambda x: ops.lm_head(x, norm, w))

    def _sampling(self, s: int) -> float:
        return self._time(lambda: (self.rand(s, self.model.vocab_size, dtype=torch.float32),),
                          lambda logits: ops.sample(logits))

    def _moe_router(self, t: int) -> float:
        router = self.weight("router", self.model.num_experts, self.hidden)
        return self._time(lambda: (self.rand(t, self.hidden),),
                          lambda x: ops.moe_route(x, router, self.model.experts_per_token))

    def _moe_experts(self, t: int) -> float:
        """Tokens routed uniformly at random (random router weights route nearly uniformly too)."""
        e, k = self.model.num_experts, self.model.experts_per_token
        gate_up = [self.weight(f"expert_gu{i}", 2 * self.moe_inter, self.hidden) for i in range(e)]
        down = [self.weight(f"expert_d{i}", self.hidden, self.moe_inter) for i in range(e)]
        def choose() -> torch.Tensor:
            return torch.rand(t, e, generator=self.gen).topk(k, dim=-1).indices.to(self.device)

        return self._time(lambda: (self.rand(t, self.hidden), choose()),
                          lambda x, ex: ops.moe_experts(x, ex, gate_up, down))

    def _moe_combine(self, t: int) -> float:
        k = self.model.experts_per_token
        rows = torch.arange(t * k, device=self.device) // k
        return self._time(lambda: (self.rand(t * k, self.hidden), self.rand(t, k)),
                          lambda out, w: ops.moe_combine(out, rows, w, t))

    # ---- attention ----------------------------------------------------------------------------

    def _paged(self, lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A K and V cache holding sequences of `lengths` in shuffled blocks, and their block tables."""
        per_seq = [ceil_div(n, BLOCK_SIZE) for n in lengths]
        total = sum(per_seq)
        k_cache = self.rand(total, BLOCK_SIZE, self.kv_heads, self.head_dim)
        v_cache = self.rand(total, BLOCK_SIZE, self.kv_heads, self.head_dim)
        order = torch.randperm(total, generator=self.gen)
        tables = torch.zeros(len(lengths), max(per_seq), dtype=torch.long)
        start = 0
        for i, count in enumerate(per_seq):
            tables[i, :count] = order[start:start + count]
            start += count
        return k_cache, v_cache, tables.to(self.device)

    def attn_prefill(self, new: int, context: int) -> float:
        def make() -> tuple:
            k_cache, v_cache, tables = self._paged([context + new])
            return self.rand(new, self.heads, self.head_dim), k_cache, v_cache, tables
        return self._time(make, lambda q, k, v, t: ops.attention_prefill(q, k, v, t, [(new, context)]))

    def attn_decode(self, batch: int, context: int) -> float:
        def make() -> tuple:
            k_cache, v_cache, tables = self._paged([context + 1] * batch)
            return self.rand(batch, self.heads, self.head_dim), k_cache, v_cache, tables
        return self._time(make, lambda q, k, v, t: ops.attention_decode(q, k, v, t, [context] * batch))

    # ---- copies -------------------------------------------------------------------------------

    def block_copy(self, nbytes: int) -> float:
        """Copy whole KV blocks inside the device cache: `nbytes` moved."""
        block_bytes = BLOCK_SIZE * self.kv_heads * self.head_dim * self.dtype.itemsize
        blocks = max(1, nbytes // block_bytes)
        cache = self.rand(2 * blocks * COPIES, BLOCK_SIZE, self.kv_heads, self.head_dim)
        pairs = [torch.randperm(2 * blocks * COPIES, generator=self.gen)[:2 * blocks].to(self.device)
                 for _ in range(COPIES)]
        return self.timer.seconds(
            lambda i: ops.copy_blocks(cache, pairs[i % COPIES][:blocks], pairs[i % COPIES][blocks:])
        )

    def swap(self, nbytes: int, to_host: bool) -> float:
        """Copy `nbytes` between device memory and (pinned, on CUDA) host memory."""
        count = max(1, nbytes // 2)
        pinned = self.device.type == "cuda"
        host = [torch.empty(count, dtype=torch.float16, pin_memory=pinned) for _ in range(COPIES)]
        device = [torch.empty(count, dtype=torch.float16, device=self.device) for _ in range(COPIES)]
        if to_host:
            return self.timer.seconds(lambda i: host[i % COPIES].copy_(device[i % COPIES], non_blocking=pinned))
        return self.timer.seconds(lambda i: device[i % COPIES].copy_(host[i % COPIES], non_blocking=pinned))

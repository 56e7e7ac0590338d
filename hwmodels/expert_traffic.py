"""How many bytes of expert weights a MoE replica reads, and copies from host memory, per iteration.

The figure layered prefill is about: every iteration reads, in each MoE layer, the weights of
each expert its tokens touch, so a prompt cut into chunks reads an expert's weights once per chunk
where a prompt advanced layer group by layer group reads them once. Counted with the cost model's
expectations (`hwmodels.moe_routing`, `hwmodels.expert_cache`), for the whole replica (every
device's share), over the iterations the engine applies (`ExpertTrafficMeter`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from servesim.hwmodels.dtypes import weight_element_bytes
from servesim.hwmodels.expert_cache import ExpertCacheEstimate
from servesim.hwmodels.model_spec import ModelSpec
from servesim.hwmodels.moe_routing import ExpertRouting, round_robin, uniform_popularity
from servesim.hwmodels.shapes import BatchShape


class ExpertTraffic:
    """Expected experts touched and loaded by one iteration of a batch, summed over MoE layers."""

    def __init__(self, model: ModelSpec, routing: ExpertRouting | None = None,
                 cache: ExpertCacheEstimate | None = None) -> None:
        if routing is None:
            routing = ExpertRouting(uniform_popularity(model.num_experts), round_robin(model.num_experts, 1),
                                    model.experts_per_token, 1, "uniform")
        self.routing, self.cache = routing, cache
        self.expert_bytes = model.layer_params(1).expert * weight_element_bytes(model.weight_dtype)
        self.first_moe_layer = model.num_dense_layers
        self.num_moe_layers = model.num_moe_layers
        self._memo: dict[int, tuple[float, float]] = {}

    def per_layer(self, tokens: int) -> tuple[float, float]:
        """(experts touched, experts loaded from the host) by `tokens` tokens in one MoE layer."""
        found = self._memo.get(tokens)
        if found is None:
            touched = float(self.routing.touched(tokens)) if tokens else 0.0
            loaded = float(self.cache.misses(tokens)) if self.cache is not None and tokens else 0.0
            found = self._memo[tokens] = (touched, loaded)
        return found

    def of_batch(self, batch: BatchShape) -> tuple[float, float]:
        """(experts touched, experts loaded) over every MoE layer of one iteration of `batch`."""
        tokens = batch.num_tokens
        touched, loaded = self.per_layer(tokens)
        if not batch.layer_slices:
            return touched * self.num_moe_layers, loaded * self.num_moe_layers
        total_touched = total_loaded = 0.0
        num_layers = self.first_moe_layer + self.num_moe_layers
        spans = [(piece.new_tokens, *piece.layers(num_layers)) for piece in batch.layer_slices]
        for layer in range(self.first_moe_layer, num_layers):
            extra = sum(n for n, first, end in spans if first <= layer < end)
            layer_touched, layer_loaded = self.per_layer(tokens + extra) if extra else (touched, loaded)
            total_touched += layer_touched
            total_loaded += layer_loaded
        return total_touched, total_loaded


@dataclass
class ExpertTrafficMeter:
    """Sums `ExpertTraffic` over the iterations a run applies (one meter per run, every replica)."""

    traffic: ExpertTraffic
    experts_touched: float = 0.0
    experts_loaded: float = 0.0
    _decode_memo: dict[int, BatchShape] = field(default_factory=dict)

    def add(self, batch: BatchShape, steps: int = 1) -> None:
        touched, loaded = self.traffic.of_batch(batch)
        self.experts_touched += steps * touched
        self.experts_loaded += steps * loaded

    def add_decodes(self, num_decodes: int, steps: int) -> None:
        """`steps` iterations of `num_decodes` decodes (a fast-forwarded stretch)."""
        shape = self._decode_memo.get(num_decodes)
        if shape is None:
            shape = self._decode_memo[num_decodes] = BatchShape((1,) * num_decodes, (1,) * num_decodes)
        self.add(shape, steps)

    def summary(self) -> dict[str, Any]:
        """The summary's `moe` block."""
        expert_bytes = self.traffic.expert_bytes
        block: dict[str, Any] = {
            "expert_weight_bytes_read": self.experts_touched * expert_bytes,
            "expert_reads": self.experts_touched,
            "routing": self.traffic.routing.label,
        }
        if self.traffic.cache is not None:
            block["offload"] = {
                **self.traffic.cache.describe(),
                "hit_rate": 1.0 - self.experts_loaded / self.experts_touched if self.experts_touched else 0.0,
                "expert_bytes_loaded": self.experts_loaded * expert_bytes,
            }
        return block

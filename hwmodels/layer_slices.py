"""Pricing layered prefill: a batch whose prompts run through only some of the layers.

Layered prefill (Lee et al. 2025, "From Tokens to Layers: Redefining Stall-Free Scheduling for
LLM Serving with Layered Prefill", arXiv 2510.08055) advances a whole prompt through one group of
layers per iteration while the decodes run through every layer. In the group's layers the
prompt's tokens join the decodes' (one pass over each expert's weights serves both); elsewhere
the decodes run alone. So the iteration is priced per run of layers: each stretch of layers that
the same prompts cover costs its share of the layers of the batch (decodes plus those prompts)
priced through every layer by the inner model. The per-iteration operators (embedding, LM head,
sampling) are the decodes' plus those of the prompts that finish (reach the last layer) in it.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from servesim.hwmodels.cost_model import CostModel, IterationCost, OperatorTime
from servesim.hwmodels.operators import LAYER_OPERATORS
from servesim.hwmodels.shapes import BatchShape, LayerSlice


class LayerSliceCostModel(CostModel):
    """`inner`'s times, with a batch's `layer_slices` priced through their layers only."""

    def __init__(self, inner: CostModel, num_layers: int) -> None:
        self.inner = inner
        self.num_layers = num_layers

    def iteration_time(self, batch: BatchShape) -> float:
        if not batch.layer_slices:
            return self.inner.iteration_time(batch)
        return self.breakdown(batch).seconds

    def breakdown(self, batch: BatchShape) -> IterationCost:
        slices = batch.layer_slices
        if not slices:
            return self.inner.breakdown(batch)
        layer_s: dict[str, float] = {}
        order: list[str] = []
        spans = [piece.layers(self.num_layers) for piece in slices]
        for first, end, covering in _runs(slices, spans, self.num_layers):
            share = (end - first) / self.num_layers
            for op in self.inner.breakdown(_with(batch, covering)).operators:
                if op.name in LAYER_OPERATORS:
                    if op.name not in layer_s:
                        order.append(op.name)
                    layer_s[op.name] = layer_s.get(op.name, 0.0) + share * op.seconds
        finishing = [piece for piece, (_, end) in zip(slices, spans, strict=True) if end == self.num_layers]
        head, tail = _split(self.inner.breakdown(_with(batch, finishing)).operators)
        layers = tuple(OperatorTime(name, self.num_layers, layer_s[name] / self.num_layers) for name in order)
        return IterationCost(head + layers + tail)

    def stretch_of_decodes_by_sum(self, num_decodes: int, context_sum: int, shortest: int, num_steps: int,
                                  ) -> np.ndarray | None:
        return self.inner.stretch_of_decodes_by_sum(num_decodes, context_sum, shortest, num_steps)

    def decodes_and_chunk_by_sum(self, num_decodes: int, decode_context_sum: int, chunk_tokens: int,
                                 chunk_context: int) -> float | None:
        return self.inner.decodes_and_chunk_by_sum(num_decodes, decode_context_sum, chunk_tokens, chunk_context)

    def describe(self) -> dict[str, Any]:
        return {**self.inner.describe(), "layered_prefill": "prompts priced through their layer group"}


def _runs(slices: tuple[LayerSlice, ...], spans: list[tuple[int, int]], num_layers: int,
          ) -> list[tuple[int, int, list[LayerSlice]]]:
    """The model's layers cut where a slice's layers start or end: (first, end, slices covering it)."""
    cuts = sorted({0, num_layers, *(first for first, _ in spans), *(end for _, end in spans)})
    return [(first, end, [piece for piece, (a, b) in zip(slices, spans, strict=True) if a <= first and end <= b])
            for first, end in zip(cuts, cuts[1:], strict=False)]


def _with(batch: BatchShape, slices: list[LayerSlice]) -> BatchShape:
    """The batch's full-depth entries plus `slices` as ordinary entries (priced through every layer)."""
    return BatchShape(batch.new_tokens + tuple(s.new_tokens for s in slices),
                      batch.context_lens + tuple(s.context_len for s in slices))


def _split(operators: tuple[OperatorTime, ...]) -> tuple[tuple[OperatorTime, ...], tuple[OperatorTime, ...]]:
    """The per-iteration operators before the first per-layer one, and those after."""
    index = next((i for i, op in enumerate(operators) if op.name in LAYER_OPERATORS), len(operators))
    outside = [op.name not in LAYER_OPERATORS for op in operators]
    head = tuple(op for op, keep in zip(operators[:index], outside[:index], strict=True) if keep)
    tail = tuple(op for op, keep in zip(operators[index:], outside[index:], strict=True) if keep)
    return head, tail

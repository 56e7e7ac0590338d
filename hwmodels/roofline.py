"""The roofline cost model: the fallback for hardware that has never been profiled.

Each operator takes max(FLOPs / (peak x compute_efficiency), bytes / (bandwidth x
memory_efficiency)); collectives use ring formulas over the node's links plus a per-step latency.

`iteration_time` is the simulator's hot path, so it never builds the operator list: the work
that depends only on the token count (or only on the entry count) is priced with numpy for a
block of counts at once and kept in a table, and attention is priced in closed form (decode from
the number of decodes and their context sum, prefill per chunk). `breakdown` builds the full
list from the same formulas, and the two agree to rounding.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from servesim.hwmodels.cost_model import CostModel, IterationCost, OperatorTime
from servesim.hwmodels.dtypes import canonical_dtype
from servesim.hwmodels.hardware_spec import HardwareSpec
from servesim.hwmodels.model_spec import ModelSpec
from servesim.hwmodels.operators import Operator, OperatorBuilder, OpKind
from servesim.hwmodels.shapes import BatchShape, ParallelPlan

# Assumed, not measured: host-side scheduling plus kernel launches of one iteration on a GPU
# serving engine. Profiled tables replace it with a measured constant.
DEFAULT_ITERATION_OVERHEAD_S = 5e-4

# Token (or entry) counts priced together when a table lookup misses, and the largest count
# kept in a table (rarer, larger counts are memoised one by one).
_TABLE_BLOCK = 1024
_TABLE_LIMIT = 16384


class RooflineCostModel(CostModel):
    """Roofline iteration times for `model` on `hardware` under `plan`.

    `dtype` is the format the weight GEMMs run in; by default the model's weight format when the
    device has a peak rate for it, else its activation format (weight-only quantised kernels
    dequantise on the fly). Attention and element-wise work run in the activation format.
    Efficiencies default to the hardware catalog's.
    """

    def __init__(
        self,
        model: ModelSpec,
        hardware: HardwareSpec,
        plan: ParallelPlan,
        dtype: str | None = None,
        iteration_overhead_s: float = DEFAULT_ITERATION_OVERHEAD_S,
        compute_efficiency: float | None = None,
        memory_efficiency: float | None = None,
    ) -> None:
        self.model, self.hardware, self.plan = model, hardware, plan
        self.compute_efficiency = hardware.compute_efficiency if compute_efficiency is None else compute_efficiency
        self.memory_efficiency = hardware.memory_efficiency if memory_efficiency is None else memory_efficiency
        for key in ("compute_efficiency", "memory_efficiency"):
            if not 0 < getattr(self, key) <= 1:
                raise ValueError(f"{key} must be in (0, 1], got {getattr(self, key)}")
        if iteration_overhead_s < 0:
            raise ValueError(f"iteration_overhead_s must be >= 0, got {iteration_overhead_s}")
        self.iteration_overhead_s = iteration_overhead_s
        if dtype is None:
            dtype = model.weight_dtype if model.weight_dtype in hardware.peak_tflops else model.activation_dtype
        self.dtype = canonical_dtype(dtype) or dtype
        self.ops = OperatorBuilder(model, plan)
        self._gemm_flops_per_s = hardware.peak_flops(self.dtype) * self.compute_efficiency
        self._flops_per_s = hardware.peak_flops(model.activation_dtype) * self.compute_efficiency
        self._bytes_per_s = hardware.memory_bandwidth_gbps * 1e9 * self.memory_efficiency
        self._latency_s = hardware.link_latency_us * 1e-6
        self._layers = model.num_layers
        work = self.ops.attention
        # Decode attention seconds per attended position / per decode, for the closed form.
        self._decode_position_flops_s = work.decode_pair_flops / self._flops_per_s
        self._decode_position_bytes_s = work.decode_position_bytes / self._bytes_per_s
        self._decode_query_bytes_s = work.decode_query_bytes / self._bytes_per_s
        # Prefill attention seconds per pair, per context token (FLOPs); per position, per context
        # token, per query (bytes): the terms of `AttentionWork.prefill` over the rates.
        self._prefill_s = (
            work.prefill_pair_flops / self._flops_per_s,
            work.prefill_context_flops / self._flops_per_s,
            work.prefill_position_bytes / self._bytes_per_s,
            work.prefill_context_bytes / self._bytes_per_s,
            work.prefill_query_bytes / self._bytes_per_s,
        )
        # Seconds of the token-count-only and entry-count-only operators, indexed by count.
        self._token_s: list[float] = []
        self._entry_s: list[float] = []
        self._token_memo: dict[int, float] = {}
        self._entry_memo: dict[int, float] = {}

    def operator_seconds(self, op: Operator) -> Any:
        """Seconds for one call of `op`; elementwise when its work is an array over counts."""
        if op.kind is OpKind.COMPUTE:
            rate = self._gemm_flops_per_s if op.weight_gemm else self._flops_per_s
            return np.maximum(op.flops / rate, op.bytes_moved / self._bytes_per_s)
        if op.kind is OpKind.OVERHEAD:
            return self.iteration_overhead_s
        n = op.group
        link = self.hardware.collective_bytes_per_s(n)
        if op.kind is OpKind.ALL_REDUCE:
            return 2 * (n - 1) / n * op.bytes_moved / link + 2 * (n - 1) * self._latency_s
        if op.kind is OpKind.ALL_TO_ALL:
            return (n - 1) / n * op.bytes_moved / link + (n - 1) * self._latency_s
        return op.bytes_moved / link + self._latency_s

    def breakdown(self, batch: BatchShape) -> IterationCost:
        return IterationCost(tuple(
            OperatorTime(op.name, op.calls, float(self.operator_seconds(op))) for op in self.ops.iteration_ops(batch)
        ))

    def iteration_time(self, batch: BatchShape) -> float:
        new, contexts = batch.new_tokens, batch.context_lens
        num_tokens, num_entries = sum(new), len(new)
        try:
            seconds = self._token_s[num_tokens] + self._entry_s[num_entries]
        except IndexError:
            seconds = self._linear_seconds(num_tokens, num_entries)
        if num_tokens == num_entries and 0 not in new and 0 not in contexts:
            positions = sum(contexts) + num_entries
            return seconds + self._layers * max(
                self._decode_position_flops_s * positions,
                self._decode_position_bytes_s * positions + self._decode_query_bytes_s * num_entries,
            )
        num_decodes = decode_sum = 0
        prefill = 0.0
        p = self._prefill_s
        for n, c in zip(new, contexts):  # the decode/prefill split of BatchShape, inlined for speed
            if n == 1 and c > 0:
                num_decodes += 1
                decode_sum += c
            else:
                pairs = n * c + n * (n + 1) // 2
                prefill += max(p[0] * pairs + p[1] * c, p[2] * (c + n) + p[3] * c + p[4] * n)
        seconds += self._layers * prefill
        if num_decodes:
            positions = decode_sum + num_decodes
            seconds += self._layers * max(
                self._decode_position_flops_s * positions,
                self._decode_position_bytes_s * positions + self._decode_query_bytes_s * num_decodes,
            )
        return seconds

    def _linear_seconds(self, num_tokens: int, num_entries: int) -> float:
        """Seconds of everything but attention, growing the per-count tables as needed."""
        return (self._count_seconds(self._token_s, self._token_memo, num_tokens, self.ops.token_ops)
                + self._count_seconds(self._entry_s, self._entry_memo, num_entries, self.ops.entry_ops))

    def _count_seconds(
        self, table: list[float], memo: dict[int, float], count: int, build: Callable[[Any], list[Operator]]
    ) -> float:
        """Seconds of the operators `build(count)`: from the table, grown a block at a time with
        numpy so that misses are rare and cheap; counts past the table's limit one at a time."""
        if count < len(table):
            return table[count]
        if count >= _TABLE_LIMIT:
            seconds = memo.get(count)
            if seconds is None:
                seconds = memo[count] = float(sum(op.calls * self.operator_seconds(op) for op in build(count)))
            return seconds
        counts = np.arange(len(table), min(max(count + 1, len(table) + _TABLE_BLOCK), _TABLE_LIMIT))
        priced = sum((op.calls * self.operator_seconds(op) for op in build(counts)), np.zeros(counts.size))
        table.extend(priced.tolist())
        return table[count]

    def stretch_of_decodes(self, contexts: np.ndarray, num_steps: int) -> np.ndarray:
        """Vectorised: only decode attention changes over a stretch (context sum grows by B a step)."""
        size = int(contexts.size)
        base = self._linear_seconds(size, size)
        positions = float(contexts.sum() + size) + size * np.arange(num_steps, dtype=np.float64)
        attention = np.maximum(
            self._decode_position_flops_s * positions,
            self._decode_position_bytes_s * positions + self._decode_query_bytes_s * size,
        )
        return base + self._layers * attention

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "roofline",
            "hardware": self.hardware.name,
            "model": self.model.name,
            "tp": self.plan.tp,
            "pp": self.plan.pp,
            "ep": self.plan.ep,
            "dtype": self.dtype,
            "compute_efficiency": self.compute_efficiency,
            "memory_efficiency": self.memory_efficiency,
            "iteration_overhead_s": self.iteration_overhead_s,
        }

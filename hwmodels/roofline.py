"""The roofline cost model: the fallback for hardware and models that have no profiled table.

Each kernel is priced by its GPU family's calibrated efficiency curve (`hwmodels.efficiency`):
a launch floor plus a smooth roofline whose achieved FLOP/s and bandwidth rise with the kernel's
size, fitted to measured vLLM kernels per family, kernel kind (weight GEMM, prefill attention,
decode attention) and dtype. Devices outside the calibrated families (the CPU) use the flat shares
of peak in their catalog entry. Collectives use ring formulas over the node's links plus a
per-step latency. Measured kernels carry no CPU time, so the per-iteration engine overhead is a
separate knob (`iteration_overhead_s`, default 0).

More tokens, context or entries never make an iteration cheaper, except that a one-token prompt
given context becomes a decode and joins the decode kernel (one launch fewer): by design.

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
from servesim.hwmodels.efficiency import EfficiencyCurve, family_curves
from servesim.hwmodels.errors import CatalogError
from servesim.hwmodels.expert_cache import ExpertCacheEstimate
from servesim.hwmodels.hardware_spec import HardwareSpec
from servesim.hwmodels.model_spec import ModelSpec
from servesim.hwmodels.moe_routing import ExpertRouting
from servesim.hwmodels.operators import Operator, OperatorBuilder, OpKind
from servesim.hwmodels.shapes import BatchShape, ParallelPlan
from servesim.hwmodels.strided_table import StridedPriceTable

# The calibrated curves price GPU kernels only (the measurements have no CPU time between
# iterations); the engine's own time is a separate term, so none is assumed here by default.
DEFAULT_ITERATION_OVERHEAD_S = 0.0

# Token (or entry) counts priced together when a table lookup misses, and the largest count
# kept in a table (rarer, larger counts are memoised one by one).
_TABLE_BLOCK = 1024
_TABLE_LIMIT = 16384
# Prefill chunks' attention prices kept by (new tokens, context): chunked prefill prices the same
# few chunk sizes at the same few offsets again and again (1,307 pairs for 30,047 chunks in
# bench_core). Cleared when full, so a trace of ever new lengths keeps at most this many.
_CHUNK_MEMO_LIMIT = 16384


class RooflineCostModel(CostModel):
    """Roofline iteration times for `model` on `hardware` under `plan`.

    `dtype` is the format the weight GEMMs run in; by default the model's weight format when the
    device has a peak rate for it, else its activation format (weight-only quantised kernels,
    int4 or fp8 on a device without fp8 units, dequantise on the fly). Attention runs in the
    activation format on KV in `kv_dtype` (the fp8-KV curves when the cache is fp8). Every other
    kernel (norms, rotary, LM head, sampling) uses the activation format's GEMM curve, for want
    of measurements of its own. `compute_efficiency` / `memory_efficiency` override the curves'
    large-kernel shares of peak (the ramp and floor stay).
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
        routing: ExpertRouting | None = None,
        cache: ExpertCacheEstimate | None = None,
    ) -> None:
        self.model, self.hardware, self.plan = model, hardware, plan
        for key, value in (("compute_efficiency", compute_efficiency), ("memory_efficiency", memory_efficiency)):
            if value is not None and not 0 < value <= 1:
                raise ValueError(f"{key} must be in (0, 1], got {value}")
        if iteration_overhead_s < 0:
            raise ValueError(f"iteration_overhead_s must be >= 0, got {iteration_overhead_s}")
        self.iteration_overhead_s = iteration_overhead_s
        self.compute_efficiency, self.memory_efficiency = compute_efficiency, memory_efficiency
        if dtype is None:
            dtype = model.weight_dtype if model.weight_dtype in hardware.peak_tflops else model.activation_dtype
        self.dtype = canonical_dtype(dtype) or dtype
        curve = self._curve_source()
        decode_curve = curve("attn_decode", model.kv_dtype)
        self.ops = OperatorBuilder(model, plan, decode_curve.tile_positions, routing, cache)
        flops_per_s, bytes_per_s = hardware.peak_flops(model.activation_dtype), hardware.memory_bandwidth_gbps * 1e9
        # Kernel-time functions with the device's rates folded in (the hot path calls them).
        self._gemm_s = curve("gemm", self.dtype).pricer(hardware.peak_flops(self.dtype), bytes_per_s)
        self._other_s = curve("gemm", model.activation_dtype).pricer(flops_per_s, bytes_per_s)
        self._prefill_s = curve("attn_prefill", model.kv_dtype).pricer(flops_per_s, bytes_per_s)
        self._decode_s = decode_curve.pricer(flops_per_s, bytes_per_s)
        work = self.ops.attention
        self._decode_work = (work.decode_pair_flops, work.decode_position_bytes, work.decode_query_bytes)
        self._chunk_tile_bytes = decode_curve.tile_positions * work.decode_position_bytes
        self._latency_s = hardware.link_latency_us * 1e-6
        self._layers = model.num_layers
        self._decode_table = StridedPriceTable(self._decode_positions_seconds)
        # Seconds of the token-count-only and entry-count-only operators, indexed by count.
        self._token_s: list[float] = []
        self._entry_s: list[float] = []
        self._token_memo: dict[int, float] = {}
        self._entry_memo: dict[int, float] = {}
        self._chunk_memo: dict[tuple[int, int], float] = {}

    def _curve_source(self) -> Callable[[str, str], EfficiencyCurve]:
        """Curves by (kernel kind, dtype): the family's calibration, or the catalog's flat shares."""
        overrides = (self.compute_efficiency, self.memory_efficiency)
        family = family_curves(self.hardware.name)
        if family is not None:
            self.efficiency_source = family.source
            measured = self.hardware.gemm_compute_efficiency or {}

            def curve(kind: str, dtype: str) -> EfficiencyCurve:
                fitted = family.curve(kind, dtype)
                if kind == "gemm" and dtype in measured:
                    fitted = fitted.with_efficiencies(measured[dtype], None)
                return fitted.with_efficiencies(*overrides)
            return curve
        compute, memory = self.hardware.compute_efficiency, self.hardware.memory_efficiency
        if compute is None or memory is None:
            raise CatalogError(
                f"hardware {self.hardware.name!r} belongs to no calibrated family and its catalog entry has no "
                "compute_efficiency / memory_efficiency; add both to its entry, or map it to a family in "
                "hwmodels/calibration_fit.py (HARDWARE_FAMILIES) and regenerate the calibration"
            )
        self.efficiency_source = f"flat shares of peak from the catalog ({self.hardware.efficiency_source})"
        flat = EfficiencyCurve.flat(compute, memory).with_efficiencies(*overrides)
        return lambda kind, dtype: flat

    def operator_seconds(self, op: Operator) -> Any:
        """Seconds for one call of `op`; elementwise when its work is an array over counts."""
        if op.kind is OpKind.COMPUTE:
            if op.weight_gemm:
                return self._gemm_s(op.flops, op.bytes_moved)
            if op.name == "attn_prefill":
                return np.maximum(self._prefill_s(op.flops, op.bytes_moved),
                                  self._decode_s(op.flops, op.bytes_moved + self._chunk_tile_bytes))
            if op.name == "attn_decode":
                return self._decode_s(op.flops, op.bytes_moved)
            return self._other_s(op.flops, op.bytes_moved)
        if op.kind is OpKind.OVERHEAD:
            return self.iteration_overhead_s
        n = op.group
        link = self.hardware.collective_bytes_per_s(n)
        if op.kind is OpKind.ALL_REDUCE:
            return 2 * (n - 1) / n * op.bytes_moved / link + 2 * (n - 1) * self._latency_s
        if op.kind is OpKind.ALL_TO_ALL:
            if n > self.hardware.devices_per_node:
                return self._all_to_all_across_nodes_s(n, op.bytes_moved)
            return (n - 1) / n * op.bytes_moved / link + (n - 1) * self._latency_s
        if op.kind is OpKind.HOST_COPY:
            return op.bytes_moved / (self.hardware.host_link_gbps * 1e9)
        return op.bytes_moved / link + self._latency_s

    def _all_to_all_across_nodes_s(self, n: int, nbytes: Any) -> Any:
        """An all-to-all over `n` devices spanning nodes: of each device's `nbytes`, the share for
        its node's other devices crosses the intra-node link and the share for other nodes its own
        inter-node link (NIC), both at once; the slower part sets the time, plus a latency step per
        peer on each link."""
        hardware = self.hardware
        per_node = hardware.devices_per_node
        intra_s = (per_node - 1) / n * nbytes / hardware.collective_bytes_per_s(per_node)
        inter_s = (n - per_node) / n * nbytes / (hardware.inter_node_link_gbps * 1e9)
        return (np.maximum(intra_s, inter_s) + (per_node - 1) * self._latency_s
                + (n - per_node) * hardware.inter_node_latency_us * 1e-6)

    def breakdown(self, batch: BatchShape) -> IterationCost:
        return IterationCost(tuple(
            OperatorTime(op.name, op.calls, float(self.operator_seconds(op))) for op in self.ops.iteration_ops(batch)
        ))

    def iteration_time(self, batch: BatchShape) -> float:
        new, contexts = batch.new_tokens, batch.context_lens
        num_tokens, num_entries = sum(new), len(new)
        seconds = self._linear_seconds(num_tokens, num_entries)
        if num_entries and num_tokens == num_entries and 0 not in new and 0 not in contexts:
            return float(seconds + self._decode_seconds(num_entries, sum(contexts)))
        if (num_entries and new[-1] != 1 and new.count(1) == num_entries - 1
                and contexts.count(0) == (contexts[-1] == 0)):
            # Decodes and one chunk after them (chunked prefill's usual step): the loop's sums
            # without the loop.
            return self._decodes_and_chunk(seconds, num_entries - 1, sum(contexts) - contexts[-1], new[-1],
                                           contexts[-1])
        num_decodes = decode_sum = 0
        prefill = 0.0
        for n, c in zip(new, contexts, strict=True):  # the decode/prefill split of BatchShape, inlined for speed
            if n == 1 and c > 0:
                num_decodes += 1
                decode_sum += c
            else:
                prefill += self._chunk_seconds(n, c)
        seconds += self._layers * prefill
        if num_decodes:
            seconds += self._decode_seconds(num_decodes, decode_sum)
        return float(seconds)

    def decodes_and_chunk_by_sum(self, num_decodes: int, decode_context_sum: int, chunk_tokens: int,
                                 chunk_context: int) -> float:
        return self._decodes_and_chunk(self._linear_seconds(num_decodes + chunk_tokens, num_decodes + 1), num_decodes,
                                       decode_context_sum, chunk_tokens, chunk_context)

    def _decodes_and_chunk(self, linear_s: float, num_decodes: int, decode_context_sum: int, chunk_tokens: int,
                           chunk_context: int) -> float:
        """The step of decodes and one chunk after them, given the seconds of its linear operators."""
        seconds = linear_s + self._layers * self._chunk_seconds(chunk_tokens, chunk_context)
        if num_decodes:
            seconds += self._decode_seconds(num_decodes, decode_context_sum)
        return float(seconds)

    def _chunk_seconds(self, num_new: int, context: int) -> float:
        """One layer's attention for a prefill chunk. It costs at least what the decode kernel takes
        for its work as one sequence (one KV tile), so a decode that becomes a two-token chunk
        never gets cheaper (the decode curve is subadditive)."""
        key = (num_new, context)
        seconds = self._chunk_memo.get(key)
        if seconds is None:
            if len(self._chunk_memo) >= _CHUNK_MEMO_LIMIT:
                self._chunk_memo.clear()
            flops, nbytes = self.ops.attention.prefill(num_new, context)
            seconds = self._chunk_memo[key] = max(self._prefill_s(flops, nbytes),
                                                  self._decode_s(flops, nbytes + self._chunk_tile_bytes))
        return seconds

    def _decode_seconds(self, num_decodes: Any, context_sum: Any) -> Any:
        """All layers' decode attention for `num_decodes` decodes with contexts summing to `context_sum`."""
        return self._decode_positions_seconds(num_decodes, context_sum + num_decodes)

    def _decode_positions_seconds(self, num_decodes: Any, positions: Any) -> Any:
        """`_decode_seconds` from the KV positions the decodes read: their context sum plus one each."""
        pair_flops, position_bytes, query_bytes = self._decode_work
        nbytes = position_bytes * positions + query_bytes * num_decodes
        return self._layers * self._decode_s(pair_flops * positions, nbytes)

    def _linear_seconds(self, num_tokens: int, num_entries: int) -> float:
        """Seconds of everything but attention, growing the per-count tables as needed."""
        try:  # the usual case: both counts in their tables
            return self._token_s[num_tokens] + self._entry_s[num_entries]
        except IndexError:
            pass
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

    def stretch_of_decodes_by_sum(self, num_decodes: int, context_sum: int, shortest: int, num_steps: int,
                                  ) -> np.ndarray:
        """Only decode attention changes over a stretch: the positions it reads grow by B a step,
        so its prices are a strided slice of the table kept by position (`strided_table`)."""
        return self._linear_seconds(num_decodes, num_decodes) + self._decode_table.strided(
            num_decodes, context_sum + num_decodes, num_steps)

    def describe(self) -> dict[str, Any]:
        moe: dict[str, Any] = {}
        if self.ops.routing is not None:
            moe["moe_routing"] = self.ops.routing.describe()
        if self.ops.cache is not None:
            moe["moe_offload"] = self.ops.cache.describe()
        return {
            "kind": "roofline",
            "hardware": self.hardware.name,
            "model": self.model.name,
            "tp": self.plan.tp,
            "pp": self.plan.pp,
            "ep": self.plan.ep,
            "dtype": self.dtype,
            "weight_dtype": self.model.weight_dtype,
            "kv_dtype": self.model.kv_dtype,
            "efficiency": self.efficiency_source,
            "compute_efficiency": self.compute_efficiency,
            "memory_efficiency": self.memory_efficiency,
            "iteration_overhead_s": self.iteration_overhead_s,
            **moe,
        }

"""`TableCostModel`: iteration times from profiled operator tables, the roofline where they end.

Each operator of the iteration (`hwmodels.operators`) is priced from the table when the table
has it for the run's tensor-parallel degree (collectives: for the group size; experts: for the
expert-parallel degree and token distribution) and format (the weights' for weight GEMMs and
experts, the KV cache's for attention, the activations' otherwise; a format of the same width
stands in, as fp16 tables for bf16 runs), interpolated in log space
(`hwmodels.tables.interpolate`); operators the table lacks are priced by the roofline and listed
in `describe()`. Shapes outside an operator's grid are scaled from the grid edge by the roofline
ratio, with one warning per operator naming it and its range, and every such pricing is counted
per operator (`describe()["out_of_grid"]`), so that no extrapolation is silent.

Speed follows the roofline model: the operators that depend only on the token (or entry) count
are summed into per-count arrays built a block at a time with numpy; attention is interpolated
per prefill chunk and per (decodes, context sum), memoised; decode stretches are vectorised.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from servesim.hwmodels.cost_model import CostModel, IterationCost, OperatorTime
from servesim.hwmodels.dtypes import DTYPE_BYTES
from servesim.hwmodels.errors import CatalogError
from servesim.hwmodels.hardware_spec import HardwareSpec
from servesim.hwmodels.model_spec import ModelSpec
from servesim.hwmodels.operators import Operator, OpKind
from servesim.hwmodels.roofline import RooflineCostModel
from servesim.hwmodels.shapes import BatchShape, ParallelPlan
from servesim.hwmodels.tables.interpolate import Curve, Surface
from servesim.hwmodels.tables.schema import COLLECTIVE_OPERATORS, OVERHEAD_OPERATOR, PREFILL_OVERHEAD_OPERATOR, TableSet

_BLOCK = 1024  # counts priced together when a per-count array grows
_LIMIT = 16384  # counts beyond this are priced one by one (memoised)
_MEMO_LIMIT = 1 << 18  # attention memo entries kept before the memo is cleared
WEIGHT_OPERATORS = ("attn_qkv_proj", "attn_out_proj", "mlp_gate_up", "mlp_down", "moe_experts", "moe_shared_experts")
MOE_DISTRIBUTIONS = ("balanced", "power_law_1.01", "power_law_1.2")  # from even to most skewed

Build = Callable[[Any], list[Operator]]


class TableRangeWarning(UserWarning):
    """A shape fell outside an operator's profiled grid and was scaled by the roofline."""


class TableCostModel(CostModel):
    """Profiled-table iteration times for `model` on `hardware` under `plan`.

    `label` names the tables in messages and in the run summary (a directory, or the shipped
    tables' name). The roofline (default: the hardware entry's efficiencies) prices what the
    tables lack and sets the trend outside their grids. `moe_distribution` picks the measured
    token distribution across experts (the nearest measured one when the tables lack it). Without
    `measured_collectives` the tables' collectives are set aside and the roofline prices them on
    the hardware's link (a box with another interconnect than the one that measured them).
    """

    def __init__(
        self, model: ModelSpec, hardware: HardwareSpec, plan: ParallelPlan, tables: TableSet, label: str,
        roofline: RooflineCostModel | None = None, moe_distribution: str = "balanced",
        measured_collectives: bool = True,
    ) -> None:
        _check_match(tables, model, hardware, plan, label)
        if moe_distribution not in MOE_DISTRIBUTIONS:
            raise CatalogError(f"unknown MoE token distribution {moe_distribution!r}; "
                               f"choose one of {', '.join(MOE_DISTRIBUTIONS)}")
        self.tables, self.label, self.plan, self.model = tables, label, plan, model
        self.moe_distribution = moe_distribution
        self.moe_distribution_used: str | None = None
        self.measured_collectives = measured_collectives
        self.roofline = roofline or RooflineCostModel(model, hardware, plan)
        self.ops = self.roofline.ops
        self._layers = model.num_layers
        self._curves = self._load_curves(tables.frame)
        self._surfaces = self._load_surfaces(tables.frame)
        self._overhead = self._load_overhead(tables.frame)
        chunk_rows = tables.frame[tables.frame["operator"] == PREFILL_OVERHEAD_OPERATOR]
        self.chunk_overhead_s = float(chunk_rows["time_s"].median()) if len(chunk_rows) else 0.0
        self.table_operators = sorted(set(self._curves) | set(self._surfaces)
                                      | ({OVERHEAD_OPERATOR} if self._overhead else set()))
        self.roofline_operators = sorted(set(self._operator_names()) - set(self.table_operators))
        self.out_of_grid: dict[str, str] = {}
        self.out_of_grid_calls: dict[str, int] = {}
        self._prefill_outside: set[tuple[int, int]] = set()
        self._decode_outside: set[tuple[int, int]] = set()
        self._token_ranges = self._count_ranges(self.ops.token_ops)
        self._entry_ranges = self._count_ranges(self.ops.entry_ops)
        if self._overhead is not None:
            self._entry_ranges[OVERHEAD_OPERATOR] = (self._overhead.lo, self._overhead.hi)
        self._token_safe = _intersect(self._token_ranges.values())
        self._entry_safe = _intersect(self._entry_ranges.values())
        self._token_s: list[float] = []
        self._entry_s: list[float] = []
        self._count_memo: dict[tuple[str, int], float] = {}
        self._prefill_memo: dict[tuple[int, int], float] = {}
        self._decode_memo: dict[tuple[int, int], float] = {}
        if self.roofline_operators:
            warnings.warn(
                f"cost tables {label}: no measurements of {', '.join(self.roofline_operators)} for "
                f"{model.name} at tp={plan.tp}; these operators are priced by the roofline",
                TableRangeWarning, stacklevel=2,
            )

    # ---- loading -----------------------------------------------------------------------------

    def _operator_names(self) -> list[str]:
        names = [op.name for op in self.ops.token_ops(1) + self.ops.entry_ops(1)]
        return names + ["attn_prefill", "attn_decode", OVERHEAD_OPERATOR]

    def _group(self, name: str) -> int:
        return {"tp_all_reduce": self.plan.tp, "ep_all_to_all": self.plan.ep, "pp_send_recv": 2}[name]

    def _dtype_of(self, name: str) -> str:
        if name in WEIGHT_OPERATORS:
            return self.model.weight_dtype
        if name in ("attn_prefill", "attn_decode"):
            return self.model.kv_dtype
        return self.model.activation_dtype

    def _rows(self, frame: Any, name: str) -> Any:
        """The rows that price `name` in this run: its plan, its format, its measured condition."""
        rows = frame[frame["operator"] == name]
        if name in COLLECTIVE_OPERATORS:
            rows = rows[rows["num_devices"] == self._group(name)]
        else:
            rows = rows[rows["tp"] == self.plan.tp]
        rows = _same_format(rows, self._dtype_of(name))
        if name == "moe_experts" and len(rows):
            rows = self._moe_rows(rows[rows["ep"] == self.plan.ep])
        return rows

    def _moe_rows(self, rows: Any) -> Any:
        variants = set(rows["variant"])
        if variants <= {""}:
            return rows
        wanted = self.moe_distribution
        order = [wanted] + sorted((d for d in MOE_DISTRIBUTIONS if d != wanted),
                                  key=lambda d: abs(MOE_DISTRIBUTIONS.index(d) - MOE_DISTRIBUTIONS.index(wanted)))
        self.moe_distribution_used = next((d for d in order if d in variants), None)
        return rows[rows["variant"] == self.moe_distribution_used]

    def _load_curves(self, frame: Any) -> dict[str, Curve]:
        curves = {}
        skipped = {OVERHEAD_OPERATOR} | (set() if self.measured_collectives else set(COLLECTIVE_OPERATORS))
        for name in {op.name for op in self.ops.token_ops(1) + self.ops.entry_ops(1)} - skipped:
            rows = self._rows(frame, name)
            if len(rows):
                size = "num_bytes" if name in COLLECTIVE_OPERATORS else "num_tokens"
                curves[name] = Curve.from_points(rows[size].to_numpy(), rows["time_s"].to_numpy())
        return curves

    def _load_overhead(self, frame: Any) -> Curve | None:
        """The per-iteration host time by batch entries (scheduling and input preparation grow
        with the batch), measured on the reference engine; None when the tables lack it."""
        rows = frame[frame["operator"] == OVERHEAD_OPERATOR]
        rows = rows[rows["tp"] == self.plan.tp] if (rows["tp"] == self.plan.tp).any() else rows
        if not len(rows):
            return None
        return Curve.from_points(rows["num_tokens"].clip(lower=1).to_numpy(), rows["time_s"].to_numpy())

    def overhead_seconds(self, num_entries: Any) -> Any:
        """Host time of an iteration of `num_entries` entries (the edge value outside the grid)."""
        if self._overhead is None:
            return np.full(np.shape(num_entries), self.roofline.iteration_overhead_s)[()]
        return self._overhead.inside(np.clip(num_entries, self._overhead.lo, self._overhead.hi))[()]

    def _load_surfaces(self, frame: Any) -> dict[str, Surface]:
        surfaces = {}
        for name in ("attn_prefill", "attn_decode"):
            rows = self._rows(frame, name)
            if len(rows):
                surfaces[name] = Surface.from_points(
                    rows["num_tokens"].to_numpy(), rows["context_len"].to_numpy(), rows["time_s"].to_numpy()
                )
        return surfaces

    def _count_ranges(self, build: Build) -> dict[str, tuple[float, float]]:
        """Each tabled operator's grid as a range of token (or entry) counts."""
        ranges = {}
        for op in build(1):
            curve = self._curves.get(op.name)
            if curve is not None:
                per_count = float(op.bytes_moved) if op.name in COLLECTIVE_OPERATORS else 1.0
                ranges[op.name] = (curve.lo / per_count, curve.hi / per_count)
        return ranges

    # ---- the hot path ------------------------------------------------------------------------

    def iteration_time(self, batch: BatchShape) -> float:
        new, contexts = batch.new_tokens, batch.context_lens
        num_tokens, num_entries = sum(new), len(new)
        seconds = self._linear_seconds(num_tokens, num_entries)
        num_decodes = decode_sum = 0
        for n, c in zip(new, contexts, strict=True):
            if n == 1 and c > 0:
                num_decodes += 1
                decode_sum += c
            else:
                seconds += self._prefill_seconds(n, c)
        if num_decodes:
            seconds += self._decode_seconds(num_decodes, decode_sum)
        return seconds

    def decodes_and_chunk_by_sum(self, num_decodes: int, decode_context_sum: int, chunk_tokens: int,
                                 chunk_context: int) -> float:
        """`iteration_time`'s loop for decodes and a last chunk: the chunk's attention, then the decodes'."""
        seconds = (self._linear_seconds(num_decodes + chunk_tokens, num_decodes + 1)
                   + self._prefill_seconds(chunk_tokens, chunk_context))
        if num_decodes:
            seconds += self._decode_seconds(num_decodes, decode_context_sum)
        return seconds

    def stretch_of_decodes_by_sum(self, num_decodes: int, context_sum: int, shortest: int, num_steps: int,
                                  ) -> np.ndarray:
        """Vectorised: only decode attention changes over a stretch (mean context grows by 1 a step)."""
        size = num_decodes
        base = self._linear_seconds(size, size)
        self._count_linear(size, size, num_steps - 1)  # `_linear_seconds` counted the first step
        means = float(context_sum) / size + np.arange(num_steps, dtype=np.float64)
        surface = self._surfaces.get("attn_decode")
        if surface is not None:
            self._count("attn_decode", int(surface.outside(size, means).sum()))
        return base + self._layers * self._decode_per_layer(size, means)

    def _count(self, name: str, calls: int = 1) -> None:
        if calls:
            self.out_of_grid_calls[name] = self.out_of_grid_calls.get(name, 0) + calls

    def _count_linear(self, num_tokens: int, num_entries: int, calls: int = 1) -> None:
        """Count (and warn once about) the per-count operators `calls` pricings put off the grid."""
        if calls <= 0:
            return
        lo, hi = self._token_safe
        if not lo <= num_tokens <= hi:
            self._check_counts("num_tokens", num_tokens, self._token_ranges, calls)
        lo, hi = self._entry_safe
        if not lo <= num_entries <= hi:
            self._check_counts("batch entries", num_entries, self._entry_ranges, calls)

    def _linear_seconds(self, num_tokens: int, num_entries: int) -> float:
        self._count_linear(num_tokens, num_entries)
        return (self._count_seconds(self._token_s, "token", num_tokens, self._price_tokens)
                + self._count_seconds(self._entry_s, "entry", num_entries, self._price_entries))

    def _count_seconds(self, table: list[float], key: str, count: int,
                       price: Callable[[np.ndarray], np.ndarray]) -> float:
        if count < len(table):
            return table[count]
        if count >= _LIMIT:
            memo_key = (key, count)
            if memo_key not in self._count_memo:
                self._count_memo[memo_key] = float(price(np.array([count]))[0])
            return self._count_memo[memo_key]
        counts = np.arange(len(table), min(max(count + 1, len(table) + _BLOCK), _LIMIT))
        table.extend(price(counts).tolist())
        return table[count]

    def _prefill_seconds(self, new_tokens: int, context_len: int) -> float:
        key = (new_tokens, context_len)
        seconds = self._prefill_memo.get(key)
        if seconds is None:
            if len(self._prefill_memo) >= _MEMO_LIMIT:
                self._prefill_memo.clear()
            per_layer, outside = self._prefill_per_layer(new_tokens, context_len)
            seconds = self._prefill_memo[key] = self._layers * per_layer + self.chunk_overhead_s
            if outside:
                self._prefill_outside.add(key)
        if key in self._prefill_outside:
            self._count("attn_prefill")
        return seconds

    def _decode_seconds(self, num_decodes: int, context_sum: int) -> float:
        key = (num_decodes, context_sum)
        seconds = self._decode_memo.get(key)
        if seconds is None:
            if len(self._decode_memo) >= _MEMO_LIMIT:
                self._decode_memo.clear()
            surface = self._surfaces.get("attn_decode")
            per_layer = surface.inside_scalar(num_decodes, context_sum / num_decodes) if surface else None
            if per_layer is None:
                means = np.array([context_sum / num_decodes])
                per_layer = float(self._decode_per_layer(num_decodes, means)[0])
                if surface is not None and surface.outside(num_decodes, means)[0]:
                    self._decode_outside.add(key)
            seconds = self._decode_memo[key] = self._layers * per_layer
        if key in self._decode_outside:
            self._count("attn_decode")
        return seconds

    # ---- pricing -----------------------------------------------------------------------------

    def _price_tokens(self, counts: np.ndarray) -> np.ndarray:
        return self._price(self.ops.token_ops, counts)

    def _price_entries(self, counts: np.ndarray) -> np.ndarray:
        """LM head, sampling and the host overhead, which grows with the entries too."""
        return self._price(self.ops.entry_ops, counts) + self.overhead_seconds(counts)

    def _price(self, build: Build, counts: np.ndarray) -> np.ndarray:
        """Seconds of every operator of `build(counts)` per count: tables where they exist."""
        total = np.zeros(counts.size)
        for op in build(counts):
            total += op.calls * self._op_seconds(op, build, counts)
        return total

    def _op_seconds(self, op: Operator, build: Build, counts: Any) -> Any:
        if op.kind is OpKind.OVERHEAD:
            return 0.0  # priced per entry count, with the LM head and sampling
        curve = self._curves.get(op.name)
        if curve is None:
            return self.roofline.operator_seconds(op)
        if op.name in COLLECTIVE_OPERATORS:
            def roofline(nbytes: np.ndarray) -> np.ndarray:
                return self.roofline.operator_seconds(replace(op, bytes_moved=nbytes))
            return curve.evaluate(op.bytes_moved, roofline)[0]

        def roofline_at(xs: np.ndarray) -> np.ndarray:
            same = next(o for o in build(xs) if o.name == op.name)
            return np.broadcast_to(self.roofline.operator_seconds(same), np.shape(xs))
        return curve.evaluate(counts, roofline_at)[0]

    def _prefill_per_layer(self, new_tokens: int, context_len: int) -> tuple[float, bool]:
        """Seconds per layer of one prefill chunk, and whether it fell outside the grid."""
        surface = self._surfaces.get("attn_prefill")
        if surface is None:
            return float(self._roof_prefill(new_tokens, np.array([context_len]))[0]), False
        fast = surface.inside_scalar(new_tokens, context_len)
        if fast is not None:
            return fast, False
        if surface.y_range == (0.0, 0.0) and context_len > 0:
            return self._prefill_from_fresh(surface, new_tokens, context_len), True
        times, outside = surface.evaluate(new_tokens, np.array([context_len]), self._roof_prefill)
        if outside:
            self._note_outside("attn_prefill", f"chunk of {new_tokens} tokens after {context_len}", surface,
                               "new tokens", "context", new_tokens)
        return float(times[0]), outside

    def _prefill_from_fresh(self, surface: Surface, new_tokens: int, context_len: int) -> float:
        """A chunk after cached context priced from tables of fresh prefills only (context 0).

        Scaling the fresh chunk of the same length by the roofline would multiply its launch-bound
        time by the context's work (a 16-token chunk after 4k context 50x too slow). The nearest
        measured points in work are used instead: the fresh prefill with as many causal query-key
        pairs (the same attention FLOPs), never below one decode at the same context (the same
        KV read); each of them roofline-scaled from its grid edge when beyond it.
        """
        pairs = new_tokens * context_len + new_tokens * (new_tokens + 1) / 2
        length = (math.sqrt(8.0 * pairs + 1.0) - 1.0) / 2.0
        seconds = float(surface.evaluate(length, np.array([0.0]), self._roof_prefill)[0][0])
        decode = self._surfaces.get("attn_decode")
        if decode is not None:
            as_decode = decode.evaluate(1, np.array([float(context_len)]), self._roof_decode)[0]
            seconds = max(seconds, float(as_decode[0]))
        self._note_outside("attn_prefill", f"chunk of {new_tokens} tokens after {context_len} (priced as a fresh "
                           f"prefill of {length:.0f} tokens, the same query-key pairs)",
                           surface, "new tokens", "context", length)
        return seconds

    def _decode_per_layer(self, num_decodes: int, mean_contexts: np.ndarray) -> np.ndarray:
        surface = self._surfaces.get("attn_decode")
        if surface is None:
            return self._roof_decode(num_decodes, mean_contexts)
        times, outside = surface.evaluate(num_decodes, mean_contexts, self._roof_decode)
        if outside and "attn_decode" not in self.out_of_grid:
            beyond = mean_contexts[surface.outside(num_decodes, mean_contexts)]
            context = float(beyond[0]) if beyond.size else float(mean_contexts.max())
            self._note_outside("attn_decode", f"{num_decodes} decodes at mean context {context:.0f}",
                               surface, "decodes", "context", num_decodes)
        return times

    def _roof_prefill(self, new_tokens: float, context_lens: np.ndarray) -> np.ndarray:
        flops, nbytes = self.ops.attention.prefill(new_tokens, context_lens)
        return np.broadcast_to(self.roofline.operator_seconds(Operator("attn_prefill", 1, flops, nbytes)),
                               np.shape(context_lens))

    def _roof_decode(self, num_decodes: float, mean_contexts: np.ndarray) -> np.ndarray:
        flops, nbytes = self.ops.attention.decode(num_decodes, num_decodes * mean_contexts)
        return np.broadcast_to(self.roofline.operator_seconds(Operator("attn_decode", 1, flops, nbytes)),
                               np.shape(mean_contexts))

    # ---- out-of-grid reporting ---------------------------------------------------------------

    def _check_counts(self, axis: str, count: int, ranges: dict[str, tuple[float, float]], calls: int) -> None:
        for name, (lo, hi) in ranges.items():
            if not lo <= count <= hi:
                self._count(name, calls)
                if name not in self.out_of_grid:
                    self._warn(name, f"{axis} {count} is outside its grid [{lo:g}, {hi:g}] {axis}")

    def _note_outside(self, name: str, shape: str, surface: Surface, x_axis: str, y_axis: str, x: float) -> None:
        """Warn once per operator, naming the span measured at this point's first-axis value (rows differ)."""
        if name not in self.out_of_grid:
            (x_lo, x_hi), (y_lo, y_hi) = surface.x_range, surface.y_range
            local = surface.y_range_at(x)
            at_x = (f"; at {x:g} {x_axis}, {y_axis} [{local[0]:g}, {local[1]:g}]"
                    if local is not None and local != (y_lo, y_hi) else "")
            self._warn(name, f"{shape} is outside its grid "
                             f"({x_axis} [{x_lo:g}, {x_hi:g}], {y_axis} [{y_lo:g}, {y_hi:g}]{at_x})")

    def _warn(self, name: str, what: str) -> None:
        self.out_of_grid[name] = what
        warnings.warn(
            f"cost tables {self.label}: {name}: {what}; scaled from the grid edge by the roofline ratio "
            f"(reported once per operator)", TableRangeWarning, stacklevel=4,
        )

    # ---- the interface's other questions -----------------------------------------------------

    def breakdown(self, batch: BatchShape) -> IterationCost:
        chunks = iter(batch.prefill_chunks())
        decodes = batch.decode_context_lens()
        counts = {"token": batch.num_tokens, "entry": batch.num_entries}
        entry_names = {op.name for op in self.ops.entry_ops(1)}
        times = []
        for op in self.ops.iteration_ops(batch):
            if op.name == "attn_prefill":
                seconds = self._prefill_per_layer(*next(chunks))[0]
            elif op.kind is OpKind.OVERHEAD:
                seconds = (float(self.overhead_seconds(batch.num_entries))
                           + self.chunk_overhead_s * len(batch.prefill_chunks()))
            elif op.name == "attn_decode":
                seconds = float(self._decode_per_layer(len(decodes), np.array([sum(decodes) / len(decodes)]))[0])
            else:
                kind = "entry" if op.name in entry_names else "token"
                build = self.ops.entry_ops if kind == "entry" else self.ops.token_ops
                count = np.array([counts[kind]])
                seconds = float(np.asarray(self._op_seconds(self._at(build, op, count), build, count)).reshape(-1)[0])
            times.append(OperatorTime(op.name, op.calls, seconds))
        return IterationCost(tuple(times))

    @staticmethod
    def _at(build: Build, op: Operator, counts: np.ndarray) -> Operator:
        """`op` rebuilt for an array of one count, so it prices exactly as the per-count arrays."""
        return next(o for o in build(counts) if o.name == op.name)

    def describe(self) -> dict[str, Any]:
        meta = self.tables.metadata
        return {
            "kind": "table",
            "tables": self.label,
            "source": self.tables.describe_source(),
            "source_key": _source_key(self.tables.metadata),
            "device_name": meta.get("device_name"),
            "hardware": self.roofline.hardware.name,
            "model": self.roofline.model.name,
            "tp": self.plan.tp,
            "pp": self.plan.pp,
            "ep": self.plan.ep,
            "dtype": self.model.weight_dtype,
            "kv_dtype": self.model.kv_dtype,
            "table_dtypes": meta.get("dtype"),
            "table_operators": self.table_operators,
            "roofline_operators": self.roofline_operators,
            "out_of_grid": {name: {"calls": self.out_of_grid_calls.get(name, 0), "first": what}
                            for name, what in sorted(self.out_of_grid.items())},
            "out_of_grid_calls": sum(self.out_of_grid_calls.values()),
            "moe_distribution": self.moe_distribution_used,
            "collectives": "tables" if self.measured_collectives else "roofline on the link",
            "link_gbps": self.roofline.hardware.intra_node_link_gbps,
            "link_latency_us": self.roofline.hardware.link_latency_us,
            "iteration_overhead_s": ("tables: by batch entries" if self._overhead
                                     else self.roofline.iteration_overhead_s),
            "prefill_chunk_overhead_s": self.chunk_overhead_s,
        }


def _same_format(rows: Any, dtype: str) -> Any:
    """Rows measured in `dtype`; else in a format of the same width (fp16 for bf16); else none."""
    exact = rows[rows["dtype"] == dtype]
    if len(exact) or not len(rows):
        return exact
    width = DTYPE_BYTES.get(dtype)
    return rows[rows["dtype"].map(lambda d: width is not None and DTYPE_BYTES.get(d) == width)]


def _source_key(metadata: dict[str, Any]) -> str:
    source = metadata.get("source")
    return str(source.get("key", source.get("name"))) if isinstance(source, dict) else "profiled"


def _intersect(ranges: Any) -> tuple[float, float]:
    ranges = list(ranges)
    if not ranges:
        return (-np.inf, np.inf)
    return max(lo for lo, _ in ranges), min(hi for _, hi in ranges)


def _check_match(tables: TableSet, model: ModelSpec, hardware: HardwareSpec, plan: ParallelPlan, label: str) -> None:
    """The tables must be for this model and hardware and hold this tensor-parallel degree."""
    meta = tables.metadata
    where = f"cost tables {label}"
    if meta["model"] != model.name:
        raise CatalogError(f"{where} were measured for model {meta['model']!r}, not {model.name!r}; "
                           f"profile {model.name} (`simrun profile --model {model.name}`) or point `tables` elsewhere")
    if meta["hardware"] != hardware.name:
        raise CatalogError(f"{where} were measured on hardware {meta['hardware']!r}, not {hardware.name!r}; "
                           "set `hardware` to match or profile this device")
    if plan.tp not in tables.tp_degrees:
        raise CatalogError(f"{where} hold tensor-parallel degrees {tables.tp_degrees}, not tp={plan.tp}; "
                           f"profile with `--tp {plan.tp}` or change cluster.parallel.tp")

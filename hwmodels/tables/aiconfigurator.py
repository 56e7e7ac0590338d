"""Convert AIConfigurator's measured vLLM kernel latencies into servesim cost tables (no torch).

AIConfigurator (github.com/ai-dynamo/aiconfigurator, Apache-2.0, Copyright (c) NVIDIA CORPORATION
& AFFILIATES) timed vLLM's own kernels on A100, H100, H200, B200, L40S and RTX PRO 6000: GEMMs on
an (m, n, k) grid, prefill and decode attention by batch, length, heads and KV heads, fused MoE by
tokens, shape, MoE-TP/EP and token distribution, vLLM's custom all-reduce and NCCL collectives.
The data are copied, as data, into `../shared/reference/aiconfigurator_perf/` (see its SOURCE.md);
this module prices each catalog model's operators from them and writes
`hwmodels/data/tables/aiconfigurator/<hardware>/<model>/` with `LICENSE` and `NOTICE` beside:

| servesim | AIConfigurator |
|---|---|
| `attn_qkv_proj`, `attn_out_proj`, `mlp_gate_up`, `mlp_down` (weight dtype) | GEMM, sharded (n, k), m = `num_tokens` |
| `lm_head`, `moe_router` (bf16) | GEMM, sharded (n, k), m = `num_tokens` |
| `attn_prefill` (`context_len` 0) | context attention, batch 1, `num_tokens` = input length |
| `attn_decode` | generation attention, `num_tokens` = batch, `context_len` = cached positions |
| `moe_experts` (`ep`, `variant` = distribution) | fused MoE at MoE-TP = tp/ep, MoE-EP = ep |
| `tp_all_reduce` | vLLM custom all-reduce (CUDA-graph timing) up to 8 MiB, NCCL all_reduce above |
| `ep_all_to_all` | NCCL alltoall |

Shapes between grid points are interpolated, never guessed: a GEMM's (n, k) off the grid is
blended from its four neighbours in log-log space; heads per device off the grid are linear
between the neighbouring head counts at the same KV heads (attention work is linear in query
heads); an (n, k) beyond the grid is the edge's time scaled by the roofline ratio. Every such
operator is listed in `metadata.json` under `derived`. Operators without data (norms, rotary,
activation, KV write, sampling, embedding, MoE combine, send/recv, host overhead) stay with the
roofline; so does an operator whose shape the data miss (a model's KV heads, a MoE-TP x EP mix).

    python -m servesim.hwmodels.tables.aiconfigurator [--reference DIR] [--out DIR]
"""
from __future__ import annotations

import argparse
import shutil
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from servesim.hwmodels.catalog import load_hardware, load_model
from servesim.hwmodels.hardware_spec import HardwareSpec
from servesim.hwmodels.model_spec import ModelSpec, ceil_div
from servesim.hwmodels.shapes import ParallelPlan
from servesim.hwmodels.tables.schema import ALL_COLUMNS, write_tables

REPOSITORY = "github.com/ai-dynamo/aiconfigurator"
COMMIT = "095f58a51c4ca8e61b66ec108d86f223f8d559ce"
DATA_PATH = "aic-core/src/aiconfigurator_core/systems"
LICENCE = "Apache-2.0, Copyright (c) NVIDIA CORPORATION & AFFILIATES"
SOURCE_KEY = "aiconfigurator"
ROOT = Path(__file__).resolve().parents[2]
DEFAULT_REFERENCE = ROOT.parent / "shared" / "reference" / "aiconfigurator_perf"
DEFAULT_OUT = ROOT / "hwmodels" / "data" / "tables" / SOURCE_KEY

GPUS = {"a100_sxm": "a100-80g", "h100_sxm": "h100-sxm", "h200_sxm": "h200", "b200_sxm": "b200", "l40s": "l40s",
        "rtx_pro_6000_server": "rtx-pro-6000"}
MODELS = ("llama-3.1-8b", "llama-3.1-70b", "llama-2-7b", "llama-2-70b", "qwen2.5-7b", "qwen3-8b", "qwen3-32b",
          "mixtral-8x7b", "qwen3-30b-a3b")
TP_DEGREES = (1, 2, 4, 8)
FIT_SHARE = 0.9  # a TP degree is shipped when the weights fit in this share of a device (vLLM default)
# servesim dtype -> AIConfigurator's name for GEMM and MoE weights, and for the KV cache.
WEIGHT_FORMATS = {"bf16": "bfloat16", "fp8": "fp8"}
KV_FORMATS = {"bf16": "bfloat16", "fp8": "fp8"}
CUSTOM_ALLREDUCE_MAX_BYTES = 8 << 20  # vLLM's CustomAllreduce default max_size; NCCL above
COLLECTIVE_DTYPE = "bf16"
# AIConfigurator's collectors record `message_size` in elements, not bytes: the all-reduce collector
# reduces a [size / 4096, 4096] tensor, the NCCL one logs nccl-tests' byte size // bytes per element.
COLLECTIVE_ELEMENT_BYTES = 2  # bfloat16 / half, the only collective dtype imported


@dataclass
class GpuData:
    """One GPU folder of the reference data, its tables read on first use."""

    folder: Path

    def _read(self, relative: str) -> pd.DataFrame:
        return pd.read_parquet(self.folder / relative)

    @cached_property
    def gemm(self) -> pd.DataFrame:
        return self._read("gemm/gemm_perf.parquet")

    @cached_property
    def context(self) -> pd.DataFrame:
        return _full_attention(self._read("attention/context_attention_perf.parquet"))

    @cached_property
    def generation(self) -> pd.DataFrame:
        return _full_attention(self._read("attention/generation_attention_perf.parquet"))

    @cached_property
    def moe(self) -> pd.DataFrame:
        return self._read("moe/moe_perf.parquet")

    @cached_property
    def custom_allreduce(self) -> pd.DataFrame | None:
        """vLLM's custom all-reduce, or None where the GPU has no such measurements."""
        relative = "comm/custom_allreduce_perf.parquet"
        if not (self.folder / relative).is_file():
            return None
        data = self._read(relative)
        graphed = (data["kernel_source"] == "vLLM_custom_graph") & (data["allreduce_dtype"] == "bfloat16")
        return _in_bytes(data[graphed])

    @cached_property
    def nccl(self) -> pd.DataFrame:
        data = self._read("nccl/nccl_perf.parquet")
        return _in_bytes(data[data["nccl_dtype"] == "half"])

    @property
    def framework_version(self) -> str:
        return f"vLLM {self.gemm['version'].iloc[0]}"

    @property
    def nccl_version(self) -> str:
        return str(self.nccl["version"].iloc[0])

    @property
    def device_name(self) -> str:
        return str(self.gemm["device"].iloc[0])


def _in_bytes(collective: pd.DataFrame) -> pd.DataFrame:
    """A collective's rows with `message_size` turned from elements (as recorded) into bytes."""
    return collective.assign(message_size=collective["message_size"] * COLLECTIVE_ELEMENT_BYTES)


def _full_attention(data: pd.DataFrame) -> pd.DataFrame:
    """Rows of full (not sliding-window) attention."""
    return data[data["window_size"] == 0] if "window_size" in data else data


@dataclass
class Conversion:
    """The rows of one (GPU, model) table set and notes on how each operator was derived."""

    model: ModelSpec
    hardware: HardwareSpec
    data: GpuData
    tps: list[int]
    dtypes: list[str]
    parts: list[pd.DataFrame] = field(default_factory=list)
    derived: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    kernels: dict[str, list[str]] = field(default_factory=dict)

    def add(self, operator: str, frame: pd.DataFrame, **shape: int | str) -> None:
        frame = frame.assign(operator=operator, **shape)
        defaults: dict[str, int | str] = {"num_tokens": 0, "context_len": 0, "num_bytes": 0, "num_devices": 1, "ep": 1,
                                          "variant": ""}
        frame = frame.assign(**{column: value for column, value in defaults.items() if column not in frame})
        self.parts.append(frame[list(ALL_COLUMNS)])

    def note_kernel(self, table: str, kernels: pd.Series) -> None:
        known = self.kernels.setdefault(table, [])
        known.extend(k for k in sorted(kernels.unique()) if k not in known)

    def frame(self) -> pd.DataFrame:
        return pd.concat(self.parts, ignore_index=True)


# ---- GEMMs ---------------------------------------------------------------------------------------


def gemm_times(conv: Conversion, n: int, k: int, fmt: str, weight_bytes: int, name: str) -> pd.DataFrame | None:
    """Time by m of an (m, n, k) GEMM in AIConfigurator's format `fmt`; None when not measured.

    On the grid: the measured rows. Between grid values of n or k: bilinear in log(n), log(k) of
    log(time). Beyond the grid: the nearest edge scaled by the roofline ratio. Noted in `derived`.
    """
    data = conv.data.gemm
    rows = data[data["gemm_dtype"] == fmt]
    if rows.empty:
        return None
    conv.note_kernel(f"gemm {fmt}", rows["kernel_source"])
    grid = rows.pivot_table(index="m", columns=["n", "k"], values="latency", aggfunc="median")
    ns, ks = sorted(rows["n"].unique()), sorted(rows["k"].unique())
    (n0, n1, wn), (k0, k1, wk) = _bracket(ns, n), _bracket(ks, k)
    corners = [(n0, k0), (n0, k1), (n1, k0), (n1, k1)]
    if any(c not in grid.columns for c in corners):
        return None
    logs = {c: np.log(grid[c]) for c in corners}
    log_t = ((1 - wn) * ((1 - wk) * logs[(n0, k0)] + wk * logs[(n0, k1)])
             + wn * ((1 - wk) * logs[(n1, k0)] + wk * logs[(n1, k1)]))
    times = np.exp(log_t).dropna()
    m = times.index.to_numpy(dtype=np.float64)
    n_edge, k_edge = min(max(n, ns[0]), ns[-1]), min(max(k, ks[0]), ks[-1])
    if (n_edge, k_edge) != (n, k):
        times = times * (_gemm_roofline(conv.hardware, m, n, k, weight_bytes)
                         / _gemm_roofline(conv.hardware, m, n_edge, k_edge, weight_bytes))
        conv.derived.append(f"{name}: n={n}, k={k} beyond the GEMM grid; the time at n={n_edge}, k={k_edge} "
                            "scaled by the roofline ratio")
    elif wn or wk:
        conv.derived.append(f"{name}: n={n}, k={k} interpolated in log-log between grid n {n0}-{n1}, k {k0}-{k1}")
    return pd.DataFrame({"num_tokens": m.astype(np.int64), "time_s": times.to_numpy() / 1e3})


def _bracket(grid: list[int], x: int) -> tuple[int, int, float]:
    """Neighbours of `x` on a sorted grid and the log-space weight of the upper one (clipped)."""
    x = min(max(x, grid[0]), grid[-1])
    i = int(np.searchsorted(grid, x))
    if grid[i] == x:
        return x, x, 0.0
    lo, hi = grid[i - 1], grid[i]
    return lo, hi, float(np.log(x / lo) / np.log(hi / lo))


def _gemm_roofline(hardware: HardwareSpec, m: np.ndarray, n: int, k: int, weight_bytes: int) -> np.ndarray:
    """Ideal seconds of an (m, n, k) GEMM: only ratios of it are used, so no efficiencies."""
    flops = 2.0 * m * n * k / hardware.peak_flops("bf16" if weight_bytes == 2 else "fp8")
    nbytes = (n * k * weight_bytes + 2.0 * m * (n + k)) / (hardware.memory_bandwidth_gbps * 1e9)
    return np.maximum(flops, nbytes)


def gemm_operators(model: ModelSpec, tp: int) -> dict[str, tuple[int, int, bool]]:
    """Each GEMM operator's sharded (n, k) and whether it runs in the weight format (else bf16)."""
    h, heads, kv = model.hidden_size, ceil_div(model.num_attention_heads, tp), model.kv_heads_per_device(tp)
    ops = {
        "attn_qkv_proj": ((heads + 2 * kv) * model.head_dim, h, True),
        "attn_out_proj": (h, heads * model.head_dim, True),
        "lm_head": (ceil_div(model.vocab_size, tp), h, False),
    }
    if model.num_dense_layers:
        inter = ceil_div(model.intermediate_size, tp)
        ops |= {"mlp_gate_up": (2 * inter, h, True), "mlp_down": (h, inter, True)}
    if model.is_moe:
        ops["moe_router"] = (model.num_experts, h, False)
    return ops


def add_gemms(conv: Conversion, tp: int) -> None:
    for dtype in conv.dtypes:
        fmt = WEIGHT_FORMATS[dtype]
        for name, (n, k, weight) in gemm_operators(conv.model, tp).items():
            if not weight and dtype != "bf16":
                continue  # LM head and router stay in the activation format
            times = gemm_times(conv, n, k, fmt, 1 if dtype == "fp8" else 2, f"{name} tp{tp} {dtype}")
            if times is None:
                conv.missing.append(f"{name} tp{tp} {dtype}: no {fmt} GEMM measurements")
                continue
            conv.add(name, times, tp=tp, dtype=dtype)


# ---- attention -----------------------------------------------------------------------------------


def attention_times(conv: Conversion, data: pd.DataFrame, heads: int, kv_heads: int, fmt: str,
                    keys: list[str], name: str) -> pd.DataFrame | None:
    """Latency by `keys` at (heads, kv_heads): measured, or linear between neighbouring head counts."""
    rows = data[(data["head_dim"] == conv.model.head_dim) & (data["num_key_value_heads"] == kv_heads)
                & (data["kv_cache_dtype"] == fmt)]
    if rows.empty:
        return None
    conv.note_kernel(f"attention {fmt}", rows["kernel_source"])
    by_heads = rows.pivot_table(index=keys, columns="num_heads", values="latency", aggfunc="median")
    measured = sorted(by_heads.columns)
    if heads in measured:
        times = by_heads[heads]
    else:
        below, above = [h for h in measured if h < heads], [h for h in measured if h > heads]
        if not below or not above:
            return None
        lo, hi = below[-1], above[0]
        times = by_heads[lo] + (by_heads[hi] - by_heads[lo]) * (heads - lo) / (hi - lo)
        conv.derived.append(f"{name}: {heads} heads (KV heads {kv_heads}) linear between measured {lo} and {hi}")
    return times.dropna().rename("latency").reset_index()


def add_attention(conv: Conversion, tp: int) -> None:
    heads, kv_heads = ceil_div(conv.model.num_attention_heads, tp), conv.model.kv_heads_per_device(tp)
    for dtype in conv.dtypes:
        fmt, context = KV_FORMATS[dtype], conv.data.context
        prefill = attention_times(conv, context[context["batch_size"] == 1], heads, kv_heads, fmt, ["isl"],
                                  f"attn_prefill tp{tp} kv {dtype}")
        if prefill is None:
            conv.missing.append(f"attn_prefill tp{tp} kv {dtype}: "
                                f"no measurement at {heads} heads / {kv_heads} KV heads")
        else:
            conv.add("attn_prefill", pd.DataFrame({"num_tokens": prefill["isl"], "time_s": prefill["latency"] / 1e3}),
                     tp=tp, dtype=dtype)
        decode = attention_times(conv, conv.data.generation, heads, kv_heads, fmt, ["batch_size", "step"],
                                 f"attn_decode tp{tp} kv {dtype}")
        if decode is None:
            conv.missing.append(f"attn_decode tp{tp} kv {dtype}: no measurement at {heads} heads / {kv_heads} KV heads")
        else:
            conv.add("attn_decode", pd.DataFrame({"num_tokens": decode["batch_size"], "context_len": decode["step"],
                                                  "time_s": decode["latency"] / 1e3}), tp=tp, dtype=dtype)


# ---- MoE -----------------------------------------------------------------------------------------


def add_moe(conv: Conversion, tp: int) -> None:
    """Fused-MoE rows at each EP size dividing `tp` that was measured (MoE-TP = tp / ep)."""
    model, data = conv.model, conv.data.moe
    shape = data[(data["hidden_size"] == model.hidden_size) & (data["inter_size"] == model.moe_intermediate_size)
                 & (data["topk"] == model.experts_per_token) & (data["num_experts"] == model.num_experts)]
    for dtype in conv.dtypes:
        fmt = WEIGHT_FORMATS[dtype]
        rows = shape[shape["moe_dtype"] == fmt]
        if rows.empty:
            conv.missing.append(f"moe_experts {dtype}: no {fmt} fused-MoE measurements for this shape")
            continue
        kernel = rows["kernel_source"].value_counts().index[0]  # one kernel per format, the most measured
        rows = rows[rows["kernel_source"] == kernel]
        conv.note_kernel(f"moe {fmt}", rows["kernel_source"])
        for ep in (e for e in TP_DEGREES if tp % e == 0):
            plan_rows = rows[(rows["moe_tp_size"] == tp // ep) & (rows["moe_ep_size"] == ep)]
            if plan_rows.empty:
                conv.missing.append(f"moe_experts tp{tp} ep{ep} {dtype}: MoE-TP {tp // ep} x EP {ep} not measured")
                continue
            for distribution, part in plan_rows.groupby("distribution"):
                times = part.groupby("num_tokens")["latency"].median()
                conv.add("moe_experts", pd.DataFrame({"num_tokens": times.index, "time_s": times.to_numpy() / 1e3}),
                         tp=tp, ep=ep, dtype=dtype, variant=str(distribution))


# ---- collectives ---------------------------------------------------------------------------------


def add_collectives(conv: Conversion) -> None:
    groups = [n for n in TP_DEGREES if 1 < n <= max(conv.tps)]
    nccl, custom = conv.data.nccl, conv.data.custom_allreduce
    for n in groups:
        reduce = nccl[(nccl["op_name"] == "all_reduce") & (nccl["num_gpus"] == n)]
        mine = None if custom is None else custom[custom["num_gpus"] == n]
        if mine is not None and len(mine):
            small = mine[mine["message_size"] <= CUSTOM_ALLREDUCE_MAX_BYTES]
            _add_collective(conv, "tp_all_reduce", small, n, "custom_allreduce")
            reduce = reduce[reduce["message_size"] > CUSTOM_ALLREDUCE_MAX_BYTES]
        _add_collective(conv, "tp_all_reduce", reduce, n, "nccl")
        if conv.model.is_moe:
            _add_collective(conv, "ep_all_to_all", nccl[(nccl["op_name"] == "alltoall") & (nccl["num_gpus"] == n)],
                            n, "nccl")


def _add_collective(conv: Conversion, operator: str, rows: pd.DataFrame, n: int, variant: str) -> None:
    if rows.empty:
        return
    times = rows.groupby("message_size")["latency"].median()
    conv.add(operator, pd.DataFrame({"num_bytes": times.index, "time_s": times.to_numpy() / 1e3}),
             num_devices=n, tp=n, dtype=COLLECTIVE_DTYPE, variant=variant)


# ---- one table set -------------------------------------------------------------------------------


def fitting_tps(model: ModelSpec, hardware: HardwareSpec, dtypes: list[str]) -> list[int]:
    """TP degrees (within a node, dividing the heads) at which the model's weights fit, in the
    smallest measured weight format."""
    smallest = 1 if "fp8" in dtypes else 2
    weight_bytes = model.weight_bytes_per_device  # bf16 catalog entries: halve for fp8
    tps = []
    for tp in TP_DEGREES:
        if tp > hardware.devices_per_node or model.num_attention_heads % tp:
            continue
        if weight_bytes(ParallelPlan(tp=tp)) * smallest / 2 <= FIT_SHARE * hardware.memory_gib * 2**30:
            tps.append(tp)
    return tps


def convert(data: GpuData, model_name: str, out: Path) -> Path | None:
    """Write the table set of `model_name` on the GPU of `data`; None when it fits at no TP."""
    gpu = data.folder.name
    model, hardware = load_model(model_name), load_hardware(GPUS[gpu])
    dtypes = [d for d, fmt in WEIGHT_FORMATS.items() if (data.gemm["gemm_dtype"] == fmt).any()]  # A100: no fp8
    tps = fitting_tps(model, hardware, dtypes)
    if not tps:
        return None
    conv = Conversion(model, hardware, data, tps, dtypes)
    for tp in tps:
        add_gemms(conv, tp)
        add_attention(conv, tp)
        if model.is_moe:
            add_moe(conv, tp)
    add_collectives(conv)
    frame = conv.frame()
    files = [f"{gpu}/{table}" for table in ("gemm/gemm_perf.parquet", "attention/context_attention_perf.parquet",
                                            "attention/generation_attention_perf.parquet", "nccl/nccl_perf.parquet",
                                            "system.yaml")]
    if data.custom_allreduce is not None:
        files.append(f"{gpu}/comm/custom_allreduce_perf.parquet")
    if model.is_moe:
        files.append(f"{gpu}/moe/moe_perf.parquet")
    metadata = {
        "hardware": hardware.name,
        "model": model.name,
        "device_name": data.device_name,
        "driver": "unknown (not recorded in the source data)",
        "torch_version": "unknown (not recorded in the source data)",
        "dtype": ", ".join(sorted(frame["dtype"].unique())),
        "date": "2026 (AIConfigurator snapshot of 2026-08-21)",
        "servesim_version": _version(),
        "framework": data.framework_version,
        "nccl_version": data.nccl_version,
        "tp_degrees": tps,
        "source": {
            "key": SOURCE_KEY,
            "name": f"AIConfigurator's measured {data.framework_version} kernels",
            "repository": REPOSITORY,
            "commit": COMMIT,
            "files": [f"{DATA_PATH}/{f}" for f in files],
            "licence": LICENCE,
            "kernels": conv.kernels,
            "converted_by": "python -m servesim.hwmodels.tables.aiconfigurator",
        },
        "derived": conv.derived,
        "not_measured": conv.missing,
        "notes": [
            "times are AIConfigurator's per-call latencies on one GPU (ms -> s); TP shards timed on one device",
            "dtype: the weight format for GEMMs and experts, the KV-cache format for attention, bf16 otherwise",
            "attn_prefill: fresh prefills (no cached context); the cost model prices a chunk after cached "
            "context as the fresh prefill with as many query-key pairs (at least one decode at that context) "
            "and counts it as out of grid",
            "tp_all_reduce: vLLM's custom all-reduce as captured in a CUDA graph up to 8 MiB, NCCL above; "
            "launch overhead of eager execution is not included",
            "moe_experts: vLLM's fused MoE (routing, both expert GEMMs, activation and top-k sum); the "
            "roofline's small moe_combine term stays on top",
            "operators without measurements are priced by servesim's roofline",
        ],
    }
    directory = write_tables(out / hardware.name / model.name, frame, metadata)
    return directory


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("servesim")
    except PackageNotFoundError:
        return "0+unknown"


def write_notices(reference: Path, out: Path) -> None:
    """The Apache-2.0 licence and a NOTICE saying what was derived from where."""
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(reference / "LICENSE", out / "LICENSE")
    (out / "NOTICE").write_text(
        "The cost tables in this folder are derived from AIConfigurator's performance database\n"
        f"({REPOSITORY}, {DATA_PATH}/ at commit {COMMIT}),\n"
        "Copyright (c) NVIDIA CORPORATION & AFFILIATES, licensed under the Apache License 2.0 (LICENSE).\n"
        "Changes: latencies converted from ms to s and re-keyed to servesim's operators; shapes between\n"
        "grid points interpolated and shapes beyond it scaled by a roofline ratio, as each table set's\n"
        "metadata.json lists under `derived`. Generated by `python -m servesim.hwmodels.tables.aiconfigurator`.\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="Convert AIConfigurator's vLLM kernel data into servesim cost tables.")
    parser.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE, help="the aiconfigurator_perf folder")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="root of the shipped aiconfigurator tables")
    args = parser.parse_args()
    write_notices(args.reference, args.out)
    total = 0
    for gpu in GPUS:
        data = GpuData(args.reference / gpu)
        for model in MODELS:
            path = convert(data, model, args.out)
            if path is None:
                print(f"{GPUS[gpu]}/{model}: does not fit at any TP degree, skipped")
                continue
            size = sum(p.stat().st_size for p in path.iterdir())
            total += size
            print(f"{GPUS[gpu]}/{model}: {size / 1024:.0f} KiB")
    print(f"total {total / 2**20:.2f} MiB")


if __name__ == "__main__":
    main()

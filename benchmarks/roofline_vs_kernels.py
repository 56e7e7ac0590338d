"""A Llama-3.1-8B decode step priced three ways: the old flat roofline, the calibrated roofline,
and the sum of the measured kernels (AIConfigurator's vLLM GEMM and decode-attention tables).

    python benchmarks/roofline_vs_kernels.py [--data ../shared/reference/aiconfigurator_perf]

Batch 32, every sequence at 1023 tokens of context (the tables' `step` grid). The measured sum
covers the kernels the tables measure (the four weight GEMMs and decode attention per layer, the
LM head once); norms, rotary, KV writes and sampling are not measured, so the comparison is over
those kernels, and the roofline's full step (with its own estimate of the rest) is shown beside.
GEMM shapes off the grid (n = 28672, k = 14336, the LM head's n = 128256) are interpolated (or,
for the LM head, extrapolated) linearly in log n, log k and log latency.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy.interpolate import RegularGridInterpolator

from servesim.hwmodels import BatchShape, ParallelPlan, load_hardware, load_model
from servesim.hwmodels.catalog import DeviceKind, HardwareSpec
from servesim.hwmodels.roofline import RooflineCostModel

BATCH, CONTEXT = 32, 1023
GPUS = {"h100_sxm": "h100-sxm", "rtx_pro_6000_server": "rtx-pro-6000"}
OLD_FLAT = (0.81, 0.90, 5e-4)  # the roofline before calibration: shares of peak, per-iteration overhead
GEMM_OPS = ("attn_qkv_proj", "attn_out_proj", "mlp_gate_up", "mlp_down", "lm_head")


def hardware_for(folder: Path, name: str) -> HardwareSpec:
    """The catalog entry, or (for a device the catalog lacks) one built from the data's system.yaml."""
    try:
        return load_hardware(name)
    except Exception:  # noqa: BLE001 - any catalog miss falls back to the data's own figures
        system = yaml.safe_load((folder / "system.yaml").read_text())
        gpu, node = system["gpu"], system["node"]
        return HardwareSpec(
            name=name, source=f"{folder.name}/system.yaml", kind=DeviceKind.GPU, memory_gib=gpu["mem_capacity"] / 2**30,
            memory_bandwidth_gbps=gpu["mem_bw"] / 1e9,
            peak_tflops={"bf16": gpu["bfloat16_tc_flops"] / 1e12, "fp8": gpu["fp8_tc_flops"] / 1e12},
            devices_per_node=node["num_gpus_per_node"], intra_node_link_gbps=node["intra_node_bw"] / 1e9,
            host_link_gbps=node["pcie_bw"] / 1e9, link_latency_us=node["p2p_latency"] * 1e6,
            inter_node_link_gbps=node["inter_node_bw"] / 1e9, inter_node_latency_us=node["p2p_latency"] * 1e6,
            efficiency_source="family curves",
        )


def measured_step(folder: Path, model_name: str = "llama-3.1-8b") -> dict[str, float]:
    """Seconds of each measured kernel kind over one decode step (all layers)."""
    model = load_model(model_name)
    gemm = pd.read_parquet(folder / "gemm" / "gemm_perf.parquet")
    gemm = gemm[(gemm.gemm_dtype == "bfloat16") & (gemm.m == BATCH)].groupby(["n", "k"]).latency.min().unstack()
    grid = RegularGridInterpolator((np.log(gemm.index.to_numpy(float)), np.log(gemm.columns.to_numpy(float))),
                                   np.log(gemm.to_numpy()), bounds_error=False, fill_value=None)

    def gemm_s(n: int, k: int) -> float:
        return float(np.exp(grid([[np.log(n), np.log(k)]])[0])) * 1e-3

    h, inter, heads, kv_heads, d = (model.hidden_size, model.intermediate_size, model.num_attention_heads,
                                    model.num_kv_heads, model.head_dim)
    attention = pd.read_parquet(folder / "attention" / "generation_attention_perf.parquet")
    attention = attention[(attention.kv_cache_dtype == "bfloat16") & (attention.batch_size == BATCH)
                          & (attention.step == CONTEXT) & (attention.num_heads == heads)
                          & (attention.num_key_value_heads == kv_heads) & (attention.head_dim == d)]
    if "window_size" in attention:
        attention = attention[attention.window_size == 0]
    layers = model.num_layers
    return {
        "attn_qkv_proj": layers * gemm_s((heads + 2 * kv_heads) * d, h),
        "attn_out_proj": layers * gemm_s(h, heads * d),
        "mlp_gate_up": layers * gemm_s(2 * inter, h),
        "mlp_down": layers * gemm_s(h, inter),
        "lm_head": gemm_s(model.vocab_size, h),
        "attn_decode": layers * float(attention.latency.min()) * 1e-3,
    }


def compare(data: Path) -> list[dict[str, float | str]]:
    model = load_model("llama-3.1-8b")
    batch = BatchShape((1,) * BATCH, (CONTEXT,) * BATCH)
    rows = []
    for folder_name, name in GPUS.items():
        folder = data / folder_name
        hardware = hardware_for(folder, name)
        compute, memory, overhead = OLD_FLAT
        flat = dataclasses.replace(hardware, name=f"{name} (flat)", compute_efficiency=compute,
                                   memory_efficiency=memory)
        old = RooflineCostModel(model, flat, ParallelPlan(), iteration_overhead_s=overhead).breakdown(batch)
        new = RooflineCostModel(model, hardware, ParallelPlan()).breakdown(batch)
        measured = measured_step(folder)
        kinds = list(measured)
        old_ops, new_ops = old.by_operator(), new.by_operator()
        rows.append({
            "gpu": name,
            "measured_kernels_ms": 1e3 * sum(measured.values()),
            "old_kernels_ms": 1e3 * sum(old_ops[k] for k in kinds),
            "new_kernels_ms": 1e3 * sum(new_ops[k] for k in kinds),
            "old_step_ms": 1e3 * old.seconds,
            "new_step_ms": 1e3 * new.seconds,
            **{f"{k}_measured/new": measured[k] / new_ops[k] for k in kinds},
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/reference/aiconfigurator_perf"))
    args = parser.parse_args()
    table = pd.DataFrame(compare(args.data)).set_index("gpu").T
    print(f"Llama-3.1-8B decode step, batch {BATCH}, context {CONTEXT}, bf16, TP1")
    print(table.to_string(float_format=lambda x: f"{x:.3f}"))


if __name__ == "__main__":
    main()

"""Fit the roofline's efficiency curves to measured kernel latencies and write the calibration file.

    python -m servesim.hwmodels.calibration_fit [--data ../shared/reference/aiconfigurator_perf]

Reads AIConfigurator's per-GPU tables (vLLM's own GEMM and attention kernels; Apache-2.0), turns
every measured shape into the FLOPs and bytes that `hwmodels.operators` charges for it, fits one
`EfficiencyCurve` per GPU family, kernel kind and dtype on a training split of shapes, and writes
`hwmodels/data/roofline_calibration.yaml` with the parameters, the provenance and the error on
the held-out shapes (median and p90 absolute relative error per GPU and kind), beside the error
of the previous flat roofline on the same shapes. Deterministic: a fixed seed picks the split.

Held out are whole weight shapes (n, k) for GEMMs and whole head layouts (heads, KV heads,
head_dim) for attention, so the error is that of a model the fit never saw. GEMMs narrower than
256 in n or k are not LLM layers and are left out; attention uses each GPU's default kernel (the
one with the most measured rows for the KV dtype) without a sliding window.
"""
from __future__ import annotations

import argparse
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from scipy.optimize import least_squares

from servesim.hwmodels.catalog import load_hardware
from servesim.hwmodels.efficiency import CALIBRATION_FILE, EfficiencyCurve

FAMILIES = {
    "ampere": ("a100_sxm",),
    "hopper": ("h100_sxm", "h200_sxm"),
    "blackwell": ("b200_sxm",),
    "ada": ("l40s",),
    "blackwell-workstation": ("rtx_pro_6000_server",),
}
# Catalog devices -> family. Devices without measurements use their family's curves scaled by
# their own peak figures (the catalog's `efficiency_source` says so).
HARDWARE_FAMILIES = {
    "a100-80g": "ampere", "a100-40g": "ampere",
    "h100-sxm": "hopper", "h200": "hopper", "mi300x": "hopper",
    "b200": "blackwell",
    "l40s": "ada", "rtx-4090": "ada", "rtx-pro-6000": "blackwell-workstation",
}
# The flat roofline this calibration replaced: catalog shares of peak (h200 measured 0.79).
PREVIOUS_FLAT = {"h200_sxm": (0.79, 0.90)}
PREVIOUS_FLAT_DEFAULT = (0.81, 0.90)
# Measurements left out as implausible, with the reason (written into the calibration file).
EXCLUDED = {
    ("rtx_pro_6000_server", "attn_prefill", "fp8"): "measured up to 10x faster than bf16 at long prompts, beyond "
    "the 2x of fp8's peak: the kernel or its timing is not comparable; the family's bf16 curve stands in",
}
HELD_OUT_SHARE = 0.2
SEED = 0
MIN_GEMM_DIM = 256
ACT_BYTES = 2
DTYPE_NAMES = {"bfloat16": "bf16", "fp8": "fp8"}


@dataclass(frozen=True)
class Samples:
    """Measured kernels of one GPU, kind and dtype as (FLOPs, bytes, seconds) and peak rates."""

    gpu: str
    kind: str
    dtype: str
    frame: pd.DataFrame  # columns flops, bytes, seconds, peak, bandwidth, shape (the split key)


# Data folders -> the catalog entries whose peaks the roofline applies to them. The curves are fitted
# against the same peaks the roofline will scale them by, so a measured device is predicted from
# its own catalog figures (system.yaml's figures differ slightly for B200, L40S and RTX PRO 6000).
CATALOG_NAMES = {
    "a100_sxm": "a100-80g", "h100_sxm": "h100-sxm", "h200_sxm": "h200", "b200_sxm": "b200",
    "l40s": "l40s", "rtx_pro_6000_server": "rtx-pro-6000",
}


def _peaks(folder: Path) -> dict[str, float]:
    hardware = load_hardware(CATALOG_NAMES[folder.name])
    peaks = {"bandwidth": hardware.memory_bandwidth_gbps * 1e9}
    peaks.update({dtype: hardware.peak_tflops[dtype] * 1e12
                  for dtype in ("bf16", "fp8") if dtype in hardware.peak_tflops})
    return peaks


def gemm_samples(folder: Path) -> list[Samples]:
    table = pd.read_parquet(folder / "gemm" / "gemm_perf.parquet")
    peaks, out = _peaks(folder), []
    for raw, dtype in DTYPE_NAMES.items():
        rows = table[(table.gemm_dtype == raw) & (table.n >= MIN_GEMM_DIM) & (table.k >= MIN_GEMM_DIM)]
        if rows.empty or dtype not in peaks:
            continue
        rows = rows.groupby(["m", "n", "k"], as_index=False).latency.min()  # the fastest kernel per shape
        m, n, k = (rows[c].to_numpy(float) for c in ("m", "n", "k"))
        weight = 1 if dtype == "fp8" else 2
        frame = pd.DataFrame({"flops": 2 * m * n * k, "bytes": k * n * weight + m * (k + n) * ACT_BYTES,
                              "seconds": rows.latency.to_numpy() * 1e-3, "peak": peaks[dtype],
                              "bandwidth": peaks["bandwidth"],
                              "shape": [f"{a}x{b}" for a, b in zip(n, k, strict=True)]})
        out.append(Samples(folder.name, "gemm", dtype, frame))
    return out


def attention_samples(folder: Path, phase: str) -> list[Samples]:
    name = "context" if phase == "attn_prefill" else "generation"
    table = pd.read_parquet(folder / "attention" / f"{name}_attention_perf.parquet")
    if "window_size" in table:
        table = table[table.window_size == 0]
    peaks, out = _peaks(folder), []
    for raw, dtype in DTYPE_NAMES.items():
        rows = table[table.kv_cache_dtype == raw]
        if rows.empty:
            continue
        rows = rows[rows.kernel_source == rows.kernel_source.value_counts().index[0]]
        b, h, kvh, d = (rows[c].to_numpy(float) for c in ("batch_size", "num_heads", "num_key_value_heads", "head_dim"))
        kv_bytes = 2 * kvh * d * (1 if dtype == "fp8" else 2)
        query_bytes = 2 * h * d * ACT_BYTES
        if phase == "attn_prefill":
            n = rows.isl.to_numpy(float)
            flops = 4 * h * d * b * n * (n + 1) / 2
            nbytes = b * n * (kv_bytes + query_bytes)
        else:
            positions = b * (rows.step.to_numpy(float) + 1)
            flops = 4 * h * d * positions
            nbytes = positions * kv_bytes + b * query_bytes
        shape = [f"{x}/{y}/{z}" for x, y, z in zip(h, kvh, d, strict=True)]
        frame = pd.DataFrame({"flops": flops, "bytes": nbytes, "seconds": rows.latency.to_numpy() * 1e-3,
                              "peak": peaks["bf16"], "bandwidth": peaks["bandwidth"], "shape": shape})
        if phase == "attn_decode":
            frame["tile_bytes"] = b * kv_bytes  # bytes of one KV position per sequence: the tile's unit
        out.append(Samples(folder.name, phase, dtype, frame))
    return out


def load_samples(data: Path) -> list[Samples]:
    out: list[Samples] = []
    for gpus in FAMILIES.values():
        for gpu in gpus:
            folder = data / gpu
            out += gemm_samples(folder)
            out += attention_samples(folder, "attn_prefill") + attention_samples(folder, "attn_decode")
    return [s for s in out if (s.gpu, s.kind, s.dtype) not in EXCLUDED]


def held_out(frame: pd.DataFrame) -> np.ndarray:
    """Rows whose shape is held out: a fixed share of shapes, chosen by a hash (seed-stable)."""
    def bucket(shape: str) -> float:
        digest = hashlib.sha256(f"{SEED}:{shape}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64
    return frame["shape"].map(bucket).to_numpy() < HELD_OUT_SHARE


# Parameters in fitting space: logs of the positive ones, so the optimiser works in ratios; the
# decode tile (positions) is fitted only where the frame has `tile_bytes`.
_LOWER = np.log([1e-6, 0.05, 1.0, 0.05, 1.0]).tolist() + [0.05, 1.0]
_UPPER = np.log([5e-5, 1.0, 1e13, 1.0, 1e10]).tolist() + [0.95, 20.0]
_START = np.log([3e-6, 0.7, 1e9, 0.8, 1e6]).tolist() + [0.7, 3.0]
_TILE_BOUNDS, _TILE_START = (0.0, np.log(4096)), np.log(16)


def _curve(p: np.ndarray) -> EfficiencyCurve:
    t0, ec, fh, em, bh = np.exp(p[:5])
    tile = float(np.exp(p[7])) if len(p) > 7 else 0.0
    return EfficiencyCurve(float(t0), float(min(ec, 1.0)), float(fh), float(min(em, 1.0)), float(bh),
                           float(p[5]), float(p[6]), tile)


def _predict(curve: EfficiencyCurve, frame: pd.DataFrame) -> np.ndarray:
    nbytes = frame.bytes.to_numpy()
    if curve.tile_positions:
        nbytes = nbytes + curve.tile_positions * frame.tile_bytes.to_numpy()
    return curve.seconds(frame.flops.to_numpy(), nbytes, frame.peak.to_numpy(), frame.bandwidth.to_numpy())


def fit_curve(frame: pd.DataFrame) -> EfficiencyCurve:
    """Least squares on log time (relative error), robust to the few odd kernels (soft L1)."""
    seconds = np.log(frame.seconds.to_numpy())
    tiled = "tile_bytes" in frame
    start = _START + ([_TILE_START] if tiled else [])
    bounds = (_LOWER + ([_TILE_BOUNDS[0]] if tiled else []), _UPPER + ([_TILE_BOUNDS[1]] if tiled else []))
    result = least_squares(lambda p: np.log(_predict(_curve(p), frame)) - seconds, start,
                           bounds=bounds, loss="soft_l1", f_scale=0.1)
    return _rounded(_curve(result.x))


def _rounded(curve: EfficiencyCurve) -> EfficiencyCurve:
    values = {key: float(f"{value:.4g}") for key, value in curve.as_dict().items()}
    return EfficiencyCurve(**values)


def _errors(predicted: np.ndarray, measured: np.ndarray) -> dict[str, float]:
    error = np.abs(predicted / measured - 1)
    return {"median": round(float(np.median(error)), 3), "p90": round(float(np.quantile(error, 0.9)), 3)}


def fit(data: Path) -> dict[str, Any]:
    samples = load_samples(data)
    families: dict[str, Any] = {}
    table: list[dict[str, Any]] = []
    for family, gpus in FAMILIES.items():
        curves: dict[str, dict[str, Any]] = {}
        for kind in ("gemm", "attn_prefill", "attn_decode"):
            for dtype in DTYPE_NAMES.values():
                group = [s for s in samples if s.gpu in gpus and s.kind == kind and s.dtype == dtype]
                if not group:
                    continue
                frames = [s.frame.assign(test=held_out(s.frame)) for s in group]
                curve = fit_curve(pd.concat([f[~f.test] for f in frames], ignore_index=True))
                curves.setdefault(kind, {})[dtype] = curve.as_dict()
                for s, frame in zip(group, frames, strict=True):
                    test = frame[frame.test]
                    flat = EfficiencyCurve.flat(*PREVIOUS_FLAT.get(s.gpu, PREVIOUS_FLAT_DEFAULT))
                    table.append({"gpu": s.gpu, "kind": kind, "dtype": dtype, "shapes": int(len(test)),
                                  "after": _errors(_predict(curve, test), test.seconds.to_numpy()),
                                  "before": _errors(_predict(flat, test), test.seconds.to_numpy())})
        families[family] = {"gpus": list(gpus), "curves": curves}
    excluded = [{"gpu": gpu, "kind": kind, "dtype": dtype, "why": why} for (gpu, kind, dtype), why in EXCLUDED.items()]
    return {"families": families, "held_out": table, "excluded": excluded}


def calibration_document(data: Path) -> dict[str, Any]:
    fitted = fit(data)
    return {
        "source": {
            "summary": "fitted to AIConfigurator's measured vLLM kernel latencies (Apache-2.0)",
            "data": "shared/reference/aiconfigurator_perf (github.com/ai-dynamo/aiconfigurator, "
                    "aic-core/src/aiconfigurator_core/systems at 095f58a5; see its SOURCE.md)",
            "script": "python -m servesim.hwmodels.calibration_fit",
            "form": "t = floor_s + (tc^q + tm^q)^(1/q); tc = (F + Fh^a F^(1-a)) / (peak ec); "
                    "tm = (B + Bh^a B^(1-a)) / (bandwidth em); decode attention reads at least tile_positions "
                    "KV positions per sequence; see hwmodels/efficiency.py",
            "peaks": "each measured GPU's catalog entry (hardware.yaml), the peaks the roofline scales the curves by",
            "split": f"{HELD_OUT_SHARE:.0%} of shapes held out by a seeded hash (seed {SEED}): GEMM weight "
                     "shapes (n, k), attention head layouts (heads, KV heads, head_dim)",
            "domain": f"GEMMs with n, k >= {MIN_GEMM_DIM}; attention without sliding window, the default kernel",
            "before": "the flat roofline this replaced: max(F / (peak 0.81), B / (bandwidth 0.90)), no floor "
                      "(h200: 0.79)",
        },
        "hardware": HARDWARE_FAMILIES,
        **fitted,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/reference/aiconfigurator_perf"))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "data" / CALIBRATION_FILE)
    args = parser.parse_args(argv)
    document = calibration_document(args.data)
    header = "# Written by `python -m servesim.hwmodels.calibration_fit`; do not edit by hand.\n"
    args.out.write_text(header + yaml.safe_dump(document, sort_keys=False, width=110))
    for row in document["held_out"]:
        print(f"{row['gpu']:22} {row['kind']:13} {row['dtype']:5} n={row['shapes']:6}  "
              f"after {row['after']['median']:.3f}/{row['after']['p90']:.3f}  "
              f"before {row['before']['median']:.3f}/{row['before']['p90']:.3f}")


if __name__ == "__main__":
    main()

"""Convert Vidur's published operator timings into servesim cost tables (no torch needed).

Vidur (github.com/microsoft/vidur, MIT licence, Copyright (c) Microsoft Corporation) measured
token-level operators of several models on A100 and H100, attention of a 70B-shaped model at
TP2 on A100, and NCCL collectives on DGX nodes. Its data are copied, as data, into
`../shared/reference/vidur_profiling/` (see its SOURCE.md); this module maps them onto
servesim's operator names and writes `hwmodels/data/tables/vidur/<hardware>/<model>/`:

| Vidur | servesim |
|---|---|
| `attn_pre_proj`, `attn_post_proj`, `attn_rope` | `attn_qkv_proj`, `attn_out_proj`, `attn_rope` |
| `input_layernorm` + `add`, `post_attention_layernorm` + `add` | `input_norm`, `post_norm` (residual add fused in) |
| `mlp_up_proj` (gate and up fused), `mlp_act`, `mlp_down_proj` | `mlp_gate_up`, `mlp_act`, `mlp_down` |
| `emb` | `embedding` |
| `attn_prefill` (batch 1, chunk x KV length), `attn_decode` (batch x KV length) | `attn_prefill`, `attn_decode` |
| `all_reduce`, `send_recv` (intra-node rows, bytes) | `tp_all_reduce`, `pp_send_recv` |

Times are Vidur's medians (ms -> s), on Vidur's full grids except the collectives, whose ~1,000
linearly spaced message sizes are thinned to 64 spaced evenly in log size. Operators Vidur did not measure (KV-cache
write, LM head, sampling, the CPU overhead, and attention except for 70B shapes at TP2 on A100)
are left to the roofline. A40 has no catalog entry and is skipped.

    python -m hwmodels.tables.vidur [--reference DIR] [--out DIR]
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from servesim.hwmodels.catalog import load_model
from servesim.hwmodels.tables.schema import COLUMNS, write_tables

REPOSITORY = "github.com/microsoft/vidur"
COMMIT = "7d47513363ec447a741ac5e47241580b47724fbf"
ATTENTION_COMMIT = "acb95f6"
LICENCE = "MIT, Copyright (c) Microsoft Corporation"
ROOT = Path(__file__).resolve().parents[2]
DEFAULT_REFERENCE = ROOT.parent / "shared" / "reference" / "vidur_profiling"
DEFAULT_OUT = ROOT / "hwmodels" / "data" / "tables" / "vidur"

TOKEN_OPERATORS = {
    "attn_qkv_proj": ("attn_pre_proj",),
    "attn_rope": ("attn_rope",),
    "attn_out_proj": ("attn_post_proj",),
    "input_norm": ("input_layernorm", "add"),
    "post_norm": ("post_attention_layernorm", "add"),
    "mlp_gate_up": ("mlp_up_proj",),
    "mlp_act": ("mlp_act",),
    "mlp_down": ("mlp_down_proj",),
    "embedding": ("emb",),
}


@dataclass(frozen=True)
class Conversion:
    """One shipped table set: a catalog (hardware, model) and the Vidur files it comes from."""

    hardware: str
    model: str
    gpu: str
    vidur_model: str
    network: str
    note: str = ""
    attention: bool = False


CONVERSIONS = (
    Conversion("a100-80g", "llama-2-7b", "a100", "meta-llama/Llama-2-7b-hf", "a100_dgx"),
    Conversion("a100-80g", "llama-2-70b", "a100", "meta-llama/Llama-2-70b-hf", "a100_dgx", attention=True),
    Conversion("a100-80g", "llama-3.1-8b", "a100", "meta-llama/Meta-Llama-3-8B", "a100_dgx",
               note="measured on Meta-Llama-3-8B, the same architecture as Llama-3.1-8B (only RoPE scaling and "
                    "context length differ, neither of which changes these kernels)"),
    Conversion("a100-80g", "llama-3.1-70b", "a100", "meta-llama/Meta-Llama-3-70B", "a100_dgx", attention=True,
               note="measured on Meta-Llama-3-70B, the same architecture as Llama-3.1-70B (only RoPE scaling and "
                    "context length differ, neither of which changes these kernels)"),
    Conversion("h100-sxm", "llama-2-7b", "h100", "meta-llama/Llama-2-7b-hf", "h100_dgx"),
    Conversion("h100-sxm", "llama-2-70b", "h100", "meta-llama/Llama-2-70b-hf", "h100_dgx"),
)


def thin(values: np.ndarray, points: int) -> np.ndarray:
    """About `points` of the distinct `values`, evenly spaced in log size, ends always kept."""
    values = np.unique(values)
    if values.size <= points:
        return values
    targets = np.geomspace(max(values[0], 1), values[-1], points)
    picked = values[np.abs(np.log(np.maximum(values, 1))[None, :] - np.log(targets)[:, None]).argmin(axis=1)]
    return np.unique(np.concatenate([picked, values[[0, -1]]]))


def rows(operator: str, times_ms: pd.Series, **shape: object) -> pd.DataFrame:
    frame = pd.DataFrame({"operator": operator, "time_s": times_ms.to_numpy() / 1e3})
    for column in COLUMNS:
        if column not in frame:
            value = shape.get(column, 0)
            frame[column] = value.to_numpy() if isinstance(value, pd.Series) else value
    return frame[list(COLUMNS)]


def token_rows(path: Path, model_name: str) -> pd.DataFrame:
    data = pd.read_csv(path)
    _check_shapes(data, model_name, path)
    parts = []
    for operator, sources in TOKEN_OPERATORS.items():
        times = data[[f"time_stats.{name}.median" for name in sources]].sum(axis=1, skipna=False)
        parts.append(rows(operator, times, num_tokens=data["num_tokens"], tp=data["num_tensor_parallel_workers"],
                          num_devices=1, dtype="fp16"))
    return pd.concat(parts)


def _check_shapes(data: pd.DataFrame, model_name: str, path: Path) -> None:
    model = load_model(model_name)
    expected = {"n_head": model.num_attention_heads, "n_kv_head": model.num_kv_heads, "n_embd": model.hidden_size,
                "n_expanded_embd": model.intermediate_size}
    for column, value in expected.items():
        if set(data[column].unique()) != {value}:
            raise ValueError(f"{path}: {column} is {sorted(data[column].unique())}, but {model_name} has {value}")


def attention_rows(path: Path) -> pd.DataFrame:
    data = pd.read_csv(path)
    prefill, decode = data[data["is_prefill"]], data[~data["is_prefill"]]
    return pd.concat([
        rows("attn_prefill", prefill["time_stats.attn_prefill.median"], num_tokens=prefill["prefill_chunk_size"],
             context_len=prefill["kv_cache_size"], tp=prefill["num_tensor_parallel_workers"],
             num_devices=1, dtype="fp16"),
        rows("attn_decode", decode["time_stats.attn_decode.median"], num_tokens=decode["batch_size"],
             context_len=decode["kv_cache_size"], tp=decode["num_tensor_parallel_workers"],
             num_devices=1, dtype="fp16"),
    ])


def network_rows(directory: Path) -> pd.DataFrame:
    """Intra-node collectives (all workers on one node), by message bytes and group size."""
    parts = []
    for file, operator in (("all_reduce.csv", "tp_all_reduce"), ("send_recv.csv", "pp_send_recv")):
        data = pd.read_csv(directory / file)
        data = data[data["num_workers"] == data["devices_per_node"]]
        data = data[data["size"].isin(thin(data["size"].to_numpy(), 64))]
        collective = file.removesuffix(".csv")
        parts.append(rows(operator, data[f"time_stats.{collective}.median"], num_bytes=data["size"],
                          num_devices=data["num_workers"], tp=data["num_workers"], dtype="fp16"))
    return pd.concat(parts)


def convert(conversion: Conversion, reference: Path, out: Path) -> Path:
    mlp = reference / "profiling" / "compute" / conversion.gpu / conversion.vidur_model / "mlp.csv"
    network = reference / "profiling" / "network" / conversion.network
    attention = reference / "legacy_acb95f6" / "profiling" / "a100" / "attention.csv"
    parts = [token_rows(mlp, conversion.model), network_rows(network)]
    files = [str(mlp.relative_to(reference)),
             *(f"profiling/network/{conversion.network}/{f}" for f in ("all_reduce.csv", "send_recv.csv"))]
    if conversion.attention:
        parts.append(attention_rows(attention))
        files.append(str(attention.relative_to(reference)))
    metadata = {
        "hardware": conversion.hardware,
        "model": conversion.model,
        "device_name": {"a100": "NVIDIA A100-SXM4-80GB", "h100": "NVIDIA H100 80GB HBM3"}[conversion.gpu],
        "driver": "unknown (not recorded by Vidur)",
        "torch_version": "unknown (not recorded by Vidur)",
        "dtype": "fp16",
        "date": "2024 (Vidur snapshot of 2024-11-19; attention from 2024-05-08)",
        "servesim_version": _version(),
        "source": {
            "name": "Vidur profiling data",
            "repository": REPOSITORY,
            "commit": COMMIT,
            "attention_commit": ATTENTION_COMMIT if conversion.attention else None,
            "files": [f"data/{f.removeprefix('legacy_acb95f6/')}" for f in files],
            "licence": LICENCE,
            "model_measured": conversion.vidur_model,
            "note": conversion.note or None,
            "key": "vidur",
            "converted_by": "python -m hwmodels.tables.vidur",
        },
        "notes": [
            "times are Vidur's medians per call on one GPU; TP shards were timed on one device",
            "input_norm and post_norm include one residual add each",
            "collectives: intra-node rows (all workers in one DGX node)",
            "operators not measured by Vidur are priced by servesim's roofline",
        ],
    }
    return write_tables(out / conversion.hardware / conversion.model, pd.concat(parts), metadata)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("servesim")
    except PackageNotFoundError:
        return "0+unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description="Convert Vidur's profiling data into servesim cost tables.")
    parser.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE, help="the vidur_profiling folder")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="root of the shipped tables")
    args = parser.parse_args()
    for conversion in CONVERSIONS:
        path = convert(conversion, args.reference, args.out)
        size = sum(p.stat().st_size for p in path.iterdir())
        print(f"{conversion.hardware}/{conversion.model}: {size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()

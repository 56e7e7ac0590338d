"""Simulated versus real: latency statistics, relative errors against the targets, a CDF plot.

Both sides are computed from the same per-request columns (arrival_s, first_token_s, finish_s,
output_tokens) with the summary's percentile definition, so a difference is the simulator's.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from servesim.sim.reporting.summary import latency_block

METRICS = ("ttft_s", "tpot_s", "e2e_s")
STATS = ("mean", "p50", "p90", "p99")
THROUGHPUTS = ("requests_per_s", "output_tokens_per_s")
TARGETS = {("tpot_s", "mean"): 0.05, ("tpot_s", "p50"): 0.05, ("tpot_s", "p90"): 0.05}
"""Largest relative error each figure may have (issue 8, item 7); unlisted p99: 15%, others: 10%."""


def target(metric: str, stat: str) -> float | None:
    if metric not in METRICS:
        return None
    return TARGETS.get((metric, stat), 0.15 if stat == "p99" else 0.10)


def latencies(table: pd.DataFrame) -> dict[str, np.ndarray]:
    """TTFT, TPOT and E2E of every finished request (TPOT: requests with two or more tokens)."""
    done = table.dropna(subset=["first_token_s", "finish_s"])
    ttft = (done["first_token_s"] - done["arrival_s"]).to_numpy(float)
    e2e = (done["finish_s"] - done["arrival_s"]).to_numpy(float)
    steps = (done["output_tokens"] - 1).to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(steps > 0, (e2e - ttft) / steps, np.nan)
    return {"ttft_s": ttft, "tpot_s": tpot, "e2e_s": e2e}


def throughputs(table: pd.DataFrame) -> dict[str, float]:
    """Finished requests and output tokens per second from the first arrival to the last finish."""
    done = table.dropna(subset=["finish_s"])
    span = float(done["finish_s"].max() - table["arrival_s"].min()) if len(done) else 0.0
    if span <= 0:
        return {key: float("nan") for key in THROUGHPUTS}
    return {"requests_per_s": len(done) / span, "output_tokens_per_s": float(done["output_tokens"].sum()) / span}


def comparison(real: pd.DataFrame, simulated: pd.DataFrame) -> pd.DataFrame:
    """One row per figure: metric, stat, real, simulated, relative error, target and whether it is met."""
    rows = []
    real_lat, sim_lat = latencies(real), latencies(simulated)
    for metric in METRICS:
        real_block, sim_block = latency_block(real_lat[metric]), latency_block(sim_lat[metric])
        rows += [(metric, stat, real_block[stat], sim_block[stat]) for stat in STATS]
    real_tp, sim_tp = throughputs(real), throughputs(simulated)
    rows += [(key, "value", real_tp[key], sim_tp[key]) for key in THROUGHPUTS]
    table = pd.DataFrame(rows, columns=["metric", "stat", "real", "simulated"])
    table["real"] = table["real"].astype(float)
    table["simulated"] = table["simulated"].astype(float)
    table["rel_error"] = (table["simulated"] - table["real"]) / table["real"]
    table["target"] = [target(m, s) for m, s in zip(table["metric"], table["stat"], strict=True)]
    table["within_target"] = [bool(abs(e) <= t) if t is not None else None
                              for e, t in zip(table["rel_error"], table["target"], strict=True)]
    return table


def format_table(table: pd.DataFrame) -> str:
    """The comparison as aligned text: latencies in ms, throughput per second."""
    lines = [f"{'figure':<22}{'real':>12}{'simulated':>12}{'error':>9}  target"]
    for row in table.to_dict("records"):
        metric = row["metric"]
        scale, unit = (1e3, "ms") if metric in METRICS else (1.0, "/s")
        name = f"{metric.removesuffix('_s')} {row['stat']} {unit}" if metric in METRICS else f"{metric}"
        mark = "" if pd.isna(row["target"]) else f"{'ok' if row['within_target'] else 'MISS'} (±{row['target']:.0%})"
        lines.append(f"{name:<22}{row['real'] * scale:>12,.1f}{row['simulated'] * scale:>12,.1f}"
                     f"{row['rel_error']:>+9.1%}  {mark}")
    return "\n".join(lines)


def write_cdf_plot(real: pd.DataFrame, simulated: pd.DataFrame, path: Path, title: str) -> Path:
    """TTFT, TPOT and E2E CDFs, real and simulated overlaid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, metric in zip(axes, METRICS, strict=True):
        for label, table, style in (("real", real, "-"), ("simulated", simulated, "--")):
            values = np.sort(latencies(table)[metric])
            values = values[~np.isnan(values)]
            if len(values):
                ax.step(values, np.arange(1, len(values) + 1) / len(values), style, where="post", label=label)
        ax.set_title(metric.removesuffix("_s").upper())
        ax.set_xlabel("seconds")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("share of requests")
    axes[0].legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

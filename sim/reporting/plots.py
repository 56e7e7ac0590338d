"""PNG plots of a run: latency CDFs, and throughput, queue length and KV use over time."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from servesim.sim.reporting.results import RunResult  # noqa: E402


def write_plots(result: RunResult, out_dir: Path) -> list[Path]:
    return [_latency_cdfs(result, out_dir / "latency_cdf.png"), _over_time(result, out_dir / "over_time.png")]


def _cdf(ax: plt.Axes, values: np.ndarray, title: str) -> None:
    values = np.sort(values[~np.isnan(values)])
    if len(values):
        ax.step(values, np.arange(1, len(values) + 1) / len(values), where="post")
    ax.set_title(title)
    ax.set_xlabel("seconds")
    ax.set_ylabel("share of requests")
    ax.grid(alpha=0.3)


def _latency_cdfs(result: RunResult, path: Path) -> Path:
    finished = result.requests[result.requests["state"] == "finished"]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    for ax, column, title in zip(
        axes,
        ("ttft_s", "tpot_s", "max_tbt_s", "e2e_s"),
        ("TTFT", "TPOT", "max TBT per request", "end-to-end latency"),
        strict=True,
    ):
        _cdf(ax, finished[column].to_numpy(dtype=float), title)
    fig.suptitle(result.config.name)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _over_time(result: RunResult, path: Path) -> Path:
    requests = result.requests
    series = result.replica_series
    fig, axes = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
    finished = requests.loc[requests["state"] == "finished", ["finish_s", "output_tokens"]]
    if len(finished):
        span = max(float(finished["finish_s"].max()), 1e-9)
        bins = np.linspace(0.0, span, min(100, max(2, len(finished) // 5)) + 1)
        counts, edges = np.histogram(finished["finish_s"], bins=bins, weights=finished["output_tokens"])
        axes[0].step(edges[:-1], counts / np.diff(edges), where="post")
    axes[0].set_ylabel("output tokens/s")
    for replica, rows in series.groupby("replica"):
        axes[1].step(rows["time_s"], rows["num_waiting"], where="post", label=f"replica {replica} waiting")
        axes[1].step(rows["time_s"], rows["num_running"], where="post", label=f"replica {replica} running", alpha=0.6)
        axes[2].step(rows["time_s"], rows["kv_used_blocks"] / rows["kv_total_blocks"], where="post",
                     label=f"replica {replica}")
    axes[1].set_ylabel("requests")
    axes[2].set_ylabel("KV blocks used (share)")
    axes[2].set_xlabel("simulated time (s)")
    for ax in axes:
        ax.grid(alpha=0.3)
    if series["replica"].nunique() <= 4:
        axes[1].legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


__all__ = ["write_plots"]

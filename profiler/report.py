"""The fidelity report: how far the simulator's predictions are from the reference engine's times.

Two kinds of figures:
- per iteration: each *measured* iteration's batch shape is priced by the cost model, and the
  error is |predicted - measured| / measured (median and p90 over iterations). This isolates
  the cost model: both sides see exactly the same batch.
- per request: the simulator replays the same trace on its own, and its TTFT, TBT and E2E
  percentiles are compared with the engine's: (simulated - measured) / measured at p50, p90 and
  p99. This includes scheduling drift (a slightly different time shifts later batches).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from servesim.hwmodels import BatchShape, CostModel
from servesim.profiler.engine import EngineRequest, IterationRecord
from servesim.sim.reporting.summary import latency_block

LATENCIES = ("ttft_s", "tbt_s", "e2e_s")
PERCENTILES = ("p50", "p90", "p99")


def iteration_table(iterations: Sequence[IterationRecord], cost_model: CostModel) -> pd.DataFrame:
    """One row per measured iteration with the cost model's prediction for its batch shape."""
    rows = []
    for it in iterations:
        shape = BatchShape(it.new_tokens, it.context_lens)
        decodes = len(shape.decode_context_lens())
        rows.append({
            "start_s": it.start_s, "end_s": it.end_s, "measured_s": it.end_s - it.start_s,
            "predicted_s": cost_model.iteration_time(shape), "num_entries": shape.num_entries,
            "num_tokens": shape.num_tokens, "num_decodes": decodes, "num_prefill_tokens": shape.num_tokens - decodes,
            "context_sum": sum(it.context_lens),
        })
    frame = pd.DataFrame(rows)
    frame["relative_error"] = (frame["predicted_s"] - frame["measured_s"]) / frame["measured_s"]
    return frame


def engine_latencies(requests: Sequence[EngineRequest]) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """TTFT and E2E per finished request and every token gap (TBT), from the engine's token times."""
    finished = [r for r in requests if not r.reject_reason and r.token_times_s]
    table = pd.DataFrame({
        "request_id": [r.request_id for r in finished],
        "arrival_s": [r.arrival_s for r in finished],
        "prompt_tokens": [r.prompt_tokens for r in finished],
        "output_tokens": [r.output_tokens for r in finished],
        "ttft_s": [r.token_times_s[0] - r.arrival_s for r in finished],
        "e2e_s": [r.finish_s - r.arrival_s for r in finished],
        "num_preemptions": [r.num_preemptions for r in finished],
    })
    gaps = np.concatenate([np.diff(r.token_times_s) for r in finished]) if finished else np.empty(0)
    return {"ttft_s": table["ttft_s"].to_numpy(), "e2e_s": table["e2e_s"].to_numpy(), "tbt_s": gaps}, table


def latency_errors(measured: dict[str, np.ndarray], simulated: dict[str, dict[str, float | None]]) -> dict[str, Any]:
    """Per latency and percentile: measured, simulated and (simulated - measured) / measured."""
    errors: dict[str, Any] = {}
    for name in LATENCIES:
        block = latency_block(measured[name])
        errors[name] = {}
        for p in PERCENTILES:
            real, predicted = block[p], simulated[name][p]
            error = None if not real or predicted is None else (predicted - real) / real
            errors[name][p] = {"measured": real, "simulated": predicted, "relative_error": error}
    return errors


def iteration_errors(table: pd.DataFrame) -> dict[str, float]:
    absolute = table["relative_error"].abs()
    return {"median": float(absolute.median()), "p90": float(absolute.quantile(0.9)),
            "mean_signed": float(table["relative_error"].mean()), "num_iterations": int(len(table))}


def plot(table: pd.DataFrame, measured: dict[str, np.ndarray], simulated: pd.DataFrame, path: Path) -> None:
    """Predicted vs measured iteration time, and measured vs simulated TTFT and E2E CDFs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    ax = axes[0]
    ax.scatter(table["measured_s"] * 1e3, table["predicted_s"] * 1e3, s=6, alpha=0.5)
    lo = min(table["measured_s"].min(), table["predicted_s"].min()) * 1e3
    hi = max(table["measured_s"].max(), table["predicted_s"].max()) * 1e3
    ax.plot([lo, hi], [lo, hi], color="black", linewidth=1)
    ax.set(xscale="log", yscale="log", xlabel="measured iteration (ms)", ylabel="predicted (ms)",
           title="iteration time: prediction vs measurement")
    for ax, name in zip(axes[1:], ("ttft_s", "e2e_s"), strict=True):
        for label, values in (("reference engine", measured[name]), ("simulator", simulated[name].dropna().to_numpy())):
            values = np.sort(values)
            ax.step(values, np.arange(1, values.size + 1) / max(values.size, 1), where="post", label=label)
        label = name.removesuffix("_s").upper()
        ax.set(xlabel=f"{label} (s)", ylabel="CDF", title=f"{label} CDF")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

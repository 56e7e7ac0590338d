"""Steady-state metrics: the run without its warm-up and its drain.

The window opens at the warm-up's end (`workload.warmup_s`, or the arrival of request number
`workload.warmup_requests`, whichever is later) and closes at the last arrival, when the offered
load starts to fall (the drain). Latencies count the finished requests that arrived inside the
window; throughput counts the requests and output tokens that finished inside it, per second of
window.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from servesim.sim.reporting.summary import latency_block


def steady_state(requests: pd.DataFrame, warmup_s: float | None, warmup_requests: int | None) -> dict[str, Any]:
    """The `steady_state` block of summary.json (see the module docstring for the window)."""
    arrivals = np.sort(requests["arrival_s"].to_numpy(float))
    start = warmup_s or 0.0
    if warmup_requests:
        start = max(start, float(arrivals[min(warmup_requests, len(arrivals) - 1)]))
    end = float(arrivals[-1]) if len(arrivals) else 0.0
    finished = requests[requests["state"] == "finished"]
    arrived = finished[(finished["arrival_s"] >= start) & (finished["arrival_s"] <= end)]
    done = finished[(finished["finish_s"] >= start) & (finished["finish_s"] <= end)]
    span = end - start
    block: dict[str, Any] = {
        "window_s": [start, end],
        "num_requests": int(len(arrived)),
        **{key: latency_block(arrived[key].to_numpy(float)) for key in ("ttft_s", "tpot_s", "e2e_s")},
    }
    block["throughput"] = {
        "requests_per_s": len(done) / span if span > 0 else None,
        "output_tokens_per_s": float(done["output_tokens"].sum()) / span if span > 0 else None,
    }
    return block

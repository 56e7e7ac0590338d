"""From per-request records and token gaps to the `summary.json` contract.

Percentiles use the inverted-CDF definition (the smallest observed value with at least p of the
mass at or below it) everywhere, so request-level and pooled per-token figures agree in meaning.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from servesim.sim.experiment.classes import ServiceClass
from servesim.sim.experiment.config import SloConfig
from servesim.sim.reporting.streamed_stats import Sample, sample_max, weighted_inverted_cdf, weighted_mean

PERCENTILES = {"p50": 50, "p90": 90, "p99": 99}


def latency_block(values: np.ndarray, weights: np.ndarray | None = None) -> dict[str, float | None]:
    """mean, p50, p90, p99 and max of `values` (optionally weighted); None when empty."""
    values = np.asarray(values, dtype=float)
    keep = ~np.isnan(values)
    values = values[keep]
    if weights is not None:
        weights = np.asarray(weights, dtype=float)[keep]
    if len(values) == 0:
        return {"mean": None, **{k: None for k in PERCENTILES}, "max": None}
    qs = np.percentile(values, list(PERCENTILES.values()), weights=weights, method="inverted_cdf")
    mean = float(np.average(values, weights=weights))
    return {"mean": mean, **{k: float(q) for k, q in zip(PERCENTILES, qs, strict=True)}, "max": float(values.max())}


def pooled_latency_block(sample: Sample) -> dict[str, float | None]:
    """`latency_block` of a weighted sample read back in blocks (the run's token gaps), as exact."""
    if sample.num_entries == 0:
        return latency_block(np.empty(0))
    quantiles = weighted_inverted_cdf(sample, [p / 100 for p in PERCENTILES.values()])
    return {"mean": weighted_mean(sample), **dict(zip(PERCENTILES, quantiles, strict=True)), "max": sample_max(sample)}


def slo_met(requests: pd.DataFrame, classes: Mapping[str, ServiceClass]) -> np.ndarray:
    """Per request: finished and within every objective of its class (others never meet them).

    A request with one output token has no TPOT, so a TPOT objective does not apply to it.
    """
    met = (requests["state"] == "finished").to_numpy().copy()
    labels = requests["slo_class"]
    for column in ("ttft_s", "tpot_s", "e2e_s"):
        limits = labels.map({name: getattr(c, column) for name, c in classes.items()}).to_numpy(dtype=float)
        values = requests[column].to_numpy(dtype=float)
        with np.errstate(invalid="ignore"):
            within = np.isnan(limits) | (values <= limits)
        if column == "tpot_s":
            within |= np.isnan(values)
        met &= within
    return met


def summarize(
    requests: pd.DataFrame,
    token_gaps: Sample,
    slo: SloConfig,
    sim_time_s: float,
) -> dict[str, Any]:
    finished = requests[requests["state"] == "finished"]
    first_arrival = float(requests["arrival_s"].min()) if len(requests) else 0.0
    last_finish = float(finished["finish_s"].max()) if len(finished) else first_arrival
    duration = last_finish - first_arrival
    met = requests["slo_met"].to_numpy(dtype=bool)

    def per_second(count: float) -> float:
        return count / duration if duration > 0 else math.nan

    return {
        "num_requests": int(len(requests)),
        "num_finished": int(len(finished)),
        "num_rejected": int((requests["state"] == "rejected").sum()),
        "num_dropped": int((requests["state"] == "dropped").sum()),
        "num_preemptions": int(requests["num_preemptions"].sum()),
        "ttft_s": latency_block(finished["ttft_s"].to_numpy()),
        "tbt_s": pooled_latency_block(token_gaps),
        "tpot_s": latency_block(finished["tpot_s"].to_numpy()),
        "e2e_s": latency_block(finished["e2e_s"].to_numpy()),
        "queue_s": latency_block(finished["queue_s"].to_numpy()),
        "normalized_latency_s": latency_block(finished["normalized_latency_s"].to_numpy()),
        "throughput": {
            "duration_s": duration,
            "requests_per_s": per_second(len(finished)),
            "input_tokens_per_s": per_second(float(finished["prompt_tokens"].sum())),
            "output_tokens_per_s": per_second(float(finished["output_tokens"].sum())),
        },
        "slo": {
            "ttft_s": slo.ttft_s,
            "tpot_s": slo.tpot_s,
            "e2e_s": slo.e2e_s,
            "attainment_target": slo.attainment_target,
            "attainment": float(met.mean()) if len(met) else math.nan,
            "meets_target": bool(len(met) and met.mean() >= slo.attainment_target),
            "goodput_requests_per_s": per_second(float(met.sum())),
        },
        "sim_time_s": sim_time_s,
    }


def summarize_classes(requests: pd.DataFrame, classes: Mapping[str, ServiceClass]) -> dict[str, Any]:
    """Per class: counts, objectives, attainment, goodput and latency blocks."""
    first_arrival = float(requests["arrival_s"].min()) if len(requests) else 0.0
    finished_all = requests[requests["state"] == "finished"]
    last_finish = float(finished_all["finish_s"].max()) if len(finished_all) else first_arrival
    duration = last_finish - first_arrival
    out: dict[str, Any] = {}
    for name, service in classes.items():
        rows = requests[requests["slo_class"] == name]
        finished = rows[rows["state"] == "finished"]
        met = rows["slo_met"].to_numpy(dtype=bool)
        out[name] = {
            "priority": service.priority,
            "num_requests": int(len(rows)),
            "num_finished": int(len(finished)),
            "num_rejected": int((rows["state"] == "rejected").sum()),
            "num_dropped": int((rows["state"] == "dropped").sum()),
            "slo": {
                "ttft_s": service.ttft_s,
                "tpot_s": service.tpot_s,
                "e2e_s": service.e2e_s,
                "timeout_s": service.timeout_s,
                "attainment": float(met.mean()) if len(met) else math.nan,
                "goodput_requests_per_s": float(met.sum()) / duration if duration > 0 else math.nan,
            },
            **{key: latency_block(finished[key].to_numpy()) for key in ("ttft_s", "tpot_s", "e2e_s", "queue_s")},
        }
    return out

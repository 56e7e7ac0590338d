"""The run's figures in the result format of vLLM's serving benchmark, to diff against a real run.

vLLM's `vllm bench serve --save-result --save-detailed` (formerly `benchmarks/benchmark_serving.py`)
writes one JSON object; the key names, units (milliseconds for latency statistics, seconds in
the per-request lists) and definitions here are its own (`vllm/benchmarks/serve.py`):

- statistics cover successful (finished) requests: TTFT; TPOT = (E2EL - TTFT) / (output - 1),
  only for outputs longer than one token (the first token excluded); ITL = every gap between
  successive tokens, pooled over all requests; E2EL = last token - arrival;
- `mean` is the arithmetic mean, `std` the population standard deviation, `median` and `pNN`
  NumPy's default (linearly interpolated) percentiles, as vLLM computes them;
- throughputs divide by the run's duration (first arrival to last finish, as `summary.json`);
- per-request lists hold every request, failed ones with 0 as vLLM records them.

What a simulation does not have is null: the run date (outputs stay identical for a seed), a
tokenizer, generated texts, per-request ITL lists (the engine pools token gaps) and the peak
output tokens per second. Keys whose value is null when servesim cannot know it are kept, so
that tools that expect them find them.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from servesim.sim.experiment.config import ExperimentConfig
from servesim.sim.reporting.json_output import json_text
from servesim.sim.reporting.streamed_stats import Sample, expanded_statistics

if TYPE_CHECKING:
    from servesim.sim.reporting.results import RunResult

FILE_NAME = "benchmark_serving.json"
METRICS = ("ttft", "tpot", "itl", "e2el")
"""vLLM's `--percentile-metrics ttft,tpot,itl,e2el`."""
PERCENTILES = (50, 90, 99)
"""vLLM's `--metric-percentiles 50,90,99`."""
BACKEND = "servesim"


def benchmark_serving_result(
    config: ExperimentConfig,
    summary: dict[str, Any],
    requests: pd.DataFrame,
    token_gaps: Sample,
) -> dict[str, Any]:
    """The result object vLLM's serving benchmark would save for this run (strict JSON values)."""
    finished = requests["state"] == "finished"
    done = requests[finished]
    duration = float(summary["throughput"]["duration_s"])
    total_input = int(done["prompt_tokens"].sum())
    total_output = int(done["output_tokens"].sum())
    run = summary["run"]

    def per_second(count: float) -> float | None:
        return count / duration if duration > 0 else None

    result: dict[str, Any] = {
        "date": None,
        "endpoint_type": BACKEND,
        "backend": BACKEND,
        "label": config.name,
        "model_id": run["model"],
        "tokenizer_id": None,
        "num_prompts": int(len(requests)),
        # Metadata, as `--metadata KEY=VALUE` adds it: what produced these figures.
        "servesim_version": str(run["version"]),
        "hardware": run["hardware"],
        "cost_model": str(run["cost_model"].get("kind", "")),
        "request_rate": _request_rate(config, requests),
        "burstiness": _burstiness(config),
        "max_concurrency": None,
        "duration": duration,
        "completed": int(finished.sum()),
        "failed": int((~finished).sum()),
        "total_input_tokens": total_input,
        "total_output_tokens": total_output,
        "request_throughput": per_second(len(done)),
        "request_goodput": _goodput(config, summary),
        "output_throughput": per_second(total_output),
        "total_token_throughput": per_second(total_input + total_output),
        "input_lens": [int(n) for n in requests["prompt_tokens"]],
        "output_lens": [int(n) for n in requests["output_tokens"].where(finished, 0)],
        "ttfts": _seconds(requests["ttft_s"].where(finished, 0.0)),
        "itls": None,
        "latencies": _seconds(requests["e2e_s"].where(finished, 0.0)),
        "start_times": _seconds(requests["arrival_s"]),
        "queue_times": [0.0] * len(requests),
        "generated_texts": None,
        "errors": _errors(requests),
        "max_output_tokens_per_s": None,
        "max_concurrent_requests": max_concurrent(done["arrival_s"].to_numpy(), done["finish_s"].to_numpy()),
        "rtfx": 0.0,
    }
    samples = {
        "ttft": done["ttft_s"].to_numpy(dtype=float),
        "tpot": done["tpot_s"].dropna().to_numpy(dtype=float),
        "e2el": done["e2e_s"].to_numpy(dtype=float),
    }
    for metric in METRICS:
        pooled = metric == "itl"  # every token's gap: read back from disk in blocks, never expanded whole
        result.update(pooled_statistics(metric, token_gaps) if pooled else metric_statistics(metric, samples[metric]))
    return result


def metric_statistics(metric: str, seconds: np.ndarray) -> dict[str, float | None]:
    """`mean_/median_/std_/pNN_<metric>_ms` of `seconds`, as vLLM computes them; null when empty."""
    keys = [f"mean_{metric}_ms", f"median_{metric}_ms", f"std_{metric}_ms"] + [
        f"p{p}_{metric}_ms" for p in PERCENTILES
    ]
    if len(seconds) == 0:
        return dict.fromkeys(keys)
    values = [np.mean(seconds), np.median(seconds), np.std(seconds), *np.percentile(seconds, PERCENTILES)]
    return {key: float(value) * 1000 for key, value in zip(keys, values, strict=True)}


def pooled_statistics(metric: str, sample: Sample) -> dict[str, float | None]:
    """`metric_statistics` of the sample with every value repeated its weight times, exactly as
    NumPy would compute them on that expanded array (see `streamed_stats`)."""
    if sample.num_entries == 0:
        return metric_statistics(metric, np.empty(0))
    values = expanded_statistics(sample, PERCENTILES)
    keys = metric_statistics(metric, np.empty(0)).keys()
    return {key: value * 1000 for key, value in zip(keys, values, strict=True)}


def max_concurrent(starts: np.ndarray, ends: np.ndarray) -> int:
    """Most requests in flight at once over half-open [start, end) intervals (ends first at a tie)."""
    times = np.concatenate([np.asarray(starts, dtype=float), np.asarray(ends, dtype=float)])
    deltas = np.concatenate([np.ones(len(starts), dtype=np.int64), np.full(len(ends), -1, dtype=np.int64)])
    in_flight = np.cumsum(deltas[np.lexsort((deltas, times))])
    return max(int(in_flight.max()), 0) if len(in_flight) else 0


def write_benchmark_serving(result: RunResult, directory: Path) -> None:
    """Write `benchmark_serving.json` for a `RunResult` into `directory`."""
    data = benchmark_serving_result(result.config, result.summary, result.requests, result.gaps)
    (Path(directory) / FILE_NAME).write_text(json_text(data))


def _seconds(values: pd.Series) -> list[float]:
    return [float(v) for v in values]


def _errors(requests: pd.DataFrame) -> list[str]:
    """"" for a finished request (as vLLM), else why it failed."""
    reasons = {"finished": "", "dropped": "dropped: not scheduled before its class's timeout"}
    return [
        reasons.get(state, f"{state}: {reason}" if reason else state)
        for state, reason in zip(requests["state"], requests["reject_reason"], strict=True)
    ]


def _request_rate(config: ExperimentConfig, requests: pd.DataFrame) -> float | str | None:
    """The offered rate (req/s): the configured one, "inf" for an offline batch, a trace's mean."""
    workload = config.workload
    arrival = workload.arrival
    if arrival is not None:
        return "inf" if arrival.process == "batch" else arrival.rate * workload.rate_scale
    arrivals = requests["arrival_s"].to_numpy(dtype=float)
    span = float(arrivals.max() - arrivals.min()) if len(arrivals) > 1 else 0.0
    return (len(arrivals) - 1) / span if span > 0 else "inf"


def _burstiness(config: ExperimentConfig) -> float | str | None:
    """vLLM's gamma shape: 1 for Poisson, 1/cv^2 for gamma, "inf" for constant gaps; null otherwise."""
    arrival = config.workload.arrival
    if arrival is None or arrival.process == "batch":
        return None
    if arrival.process == "poisson":
        return 1.0
    if arrival.process == "gamma" and arrival.cv is not None:
        return 1.0 / arrival.cv**2
    return "inf"


def _goodput(config: ExperimentConfig, summary: dict[str, Any]) -> float | None:
    """Requests per second within their objectives; null without objectives (vLLM without --goodput)."""
    objectives: Sequence[float | None] = [config.slo.ttft_s, config.slo.tpot_s, config.slo.e2e_s] + [
        value for c in config.workload.classes for value in (c.slo.ttft_s, c.slo.tpot_s, c.slo.e2e_s)
    ]
    goodput = summary["slo"]["goodput_requests_per_s"]
    if all(value is None for value in objectives) or goodput is None or not math.isfinite(goodput):
        return None
    return float(goodput)

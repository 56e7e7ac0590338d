"""Synthetic workloads: arrival processes and request-length distributions.

Every function takes a `numpy.random.Generator`, so the caller decides the seed stream.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from traces.errors import TraceError
from traces.loaders import load_length_table

ARRIVAL_PROCESSES = ("poisson", "gamma", "constant")
LENGTH_DISTRIBUTIONS = ("fixed", "uniform", "lognormal", "normal", "empirical")


def arrival_times(
    process: str, rate: float, num_requests: int, rng: np.random.Generator, cv: float | None = None
) -> np.ndarray:
    """Arrival times (s) of `num_requests` requests at mean `rate` req/s.

    Request i arrives at the sum of the first i+1 gaps: Poisson gaps are exponential, gamma
    gaps have coefficient of variation `cv` (shape 1/cv², mean 1/rate), constant gaps are 1/rate.
    """
    if rate <= 0 or not np.isfinite(rate):
        raise TraceError(f"arrival rate must be a positive number of requests per second, got {rate!r}")
    if num_requests < 0:
        raise TraceError(f"num_requests must be >= 0, got {num_requests}")
    if process == "poisson":
        gaps = rng.exponential(1.0 / rate, num_requests)
    elif process == "gamma":
        if cv is None or cv <= 0:
            raise TraceError(f"the gamma arrival process needs a coefficient of variation cv > 0, got {cv!r}")
        shape = 1.0 / cv**2
        gaps = rng.gamma(shape, 1.0 / (rate * shape), num_requests)
    elif process == "constant":
        gaps = np.full(num_requests, 1.0 / rate)
    else:
        raise TraceError(f"unknown arrival process {process!r}; processes: {', '.join(ARRIVAL_PROCESSES)}")
    return np.cumsum(gaps)


def sample_lengths(spec: Mapping[str, Any], num: int, rng: np.random.Generator, origin: str) -> np.ndarray:
    """`num` token counts (>= 1) drawn from the distribution described by `spec`.

    `{dist: fixed, value}`, `{dist: uniform, min, max}` (inclusive), `{dist: lognormal, mean,
    sigma, min?, max?}` (mean of the distribution in tokens), `{dist: normal, mean, std, min?,
    max?}`, `{dist: empirical, values: [...]}` or `{dist: empirical, path, column}`.
    """
    dist = spec.get("dist")
    params = {k: v for k, v in spec.items() if k != "dist"}
    if dist == "fixed":
        _expect(params, origin, required=("value",))
        value = _integer(params, "value", origin)
        return np.full(num, value, dtype=np.int64)
    if dist == "uniform":
        _expect(params, origin, required=("min", "max"))
        low, high = _integer(params, "min", origin), _integer(params, "max", origin)
        if high < low:
            raise TraceError(f"{origin}: max ({high}) is below min ({low})")
        return rng.integers(low, high + 1, num, dtype=np.int64)
    if dist == "lognormal":
        _expect(params, origin, required=("mean", "sigma"), optional=("min", "max"))
        mean, sigma = _positive(params, "mean", origin), _positive(params, "sigma", origin, allow_zero=True)
        draws = rng.lognormal(np.log(mean) - sigma**2 / 2, sigma, num)
        return _round_and_clip(draws, params, origin)
    if dist == "normal":
        _expect(params, origin, required=("mean", "std"), optional=("min", "max"))
        draws = rng.normal(_positive(params, "mean", origin), _positive(params, "std", origin, allow_zero=True), num)
        return _round_and_clip(draws, params, origin)
    if dist == "empirical":
        return rng.choice(_empirical_values(params, origin), num)
    raise TraceError(f"{origin}: unknown dist {dist!r}; distributions: {', '.join(LENGTH_DISTRIBUTIONS)}")


def sample_length_pairs(path: str | Path, num: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Rows of a length table drawn jointly, keeping each prompt with its own output length."""
    table = load_length_table(path)
    rows = rng.integers(0, len(table), num)
    return table["prompt_tokens"].to_numpy()[rows], table["output_tokens"].to_numpy()[rows]


def _expect(params: Mapping[str, Any], origin: str, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> None:
    missing = [k for k in required if k not in params]
    if missing:
        raise TraceError(f"{origin}: missing {', '.join(missing)} (this distribution takes {', '.join(required + optional)})")
    unknown = [k for k in params if k not in required + optional]
    if unknown:
        raise TraceError(f"{origin}: unknown key(s) {', '.join(unknown)} (this distribution takes {', '.join(required + optional)})")


def _integer(params: Mapping[str, Any], key: str, origin: str) -> int:
    value = params[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TraceError(f"{origin}.{key}: expected a whole number of tokens >= 1, got {value!r}")
    return value


def _positive(params: Mapping[str, Any], key: str, origin: str, allow_zero: bool = False) -> float:
    value = params[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (value == 0 and not allow_zero):
        raise TraceError(f"{origin}.{key}: expected a positive number, got {value!r}")
    return float(value)


def _round_and_clip(draws: np.ndarray, params: Mapping[str, Any], origin: str) -> np.ndarray:
    low = _integer(params, "min", origin) if "min" in params else 1
    high = _integer(params, "max", origin) if "max" in params else None
    if high is not None and high < low:
        raise TraceError(f"{origin}: max ({high}) is below min ({low})")
    return np.clip(np.rint(draws), low, high).astype(np.int64)


def _empirical_values(params: Mapping[str, Any], origin: str) -> np.ndarray:
    if "values" in params:
        _expect(params, origin, required=("values",))
        values = params["values"]
        if not isinstance(values, list) or not values or not all(isinstance(v, int) and v >= 1 for v in values):
            raise TraceError(f"{origin}.values: expected a non-empty list of token counts >= 1")
        return np.asarray(values, dtype=np.int64)
    _expect(params, origin, required=("path", "column"))
    column = params["column"]
    if column not in ("prompt_tokens", "output_tokens"):
        raise TraceError(f"{origin}.column: expected prompt_tokens or output_tokens, got {column!r}")
    return load_length_table(params["path"])[column].to_numpy()

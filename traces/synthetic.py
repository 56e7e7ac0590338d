"""Synthetic workloads: arrival processes and request-length distributions.

Every function takes a `numpy.random.Generator`, so the caller owns the seed stream and the
same seed gives the same workload. Specifications come from user configs, so every problem
is a TraceError naming the config key (`origin`) and the fix.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import numpy as np

from servesim.traces.errors import TraceError
from servesim.traces.lengths import load_length_table
from servesim.traces.loaders import load_trace

ARRIVAL_PROCESSES = ("poisson", "gamma", "constant", "batch")
MAX_LOGNORMAL_SIGMA = 4.0
MAX_DRAWN_TOKENS = 2**40  # beyond any context window (such requests are rejected), far from int64 overflow
LENGTH_DISTRIBUTIONS = ("fixed", "uniform", "lognormal", "normal", "empirical")
LENGTH_PARAMETERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {  # dist -> (required, optional)
    "fixed": (("value",), ()),
    "uniform": (("min", "max"), ()),
    "lognormal": (("mean", "sigma"), ("min", "max")),
    "normal": (("mean", "std"), ("min", "max")),
}


def arrival_times(
    process: str, rate: float, num_requests: int, rng: np.random.Generator, cv: float | None = None
) -> np.ndarray:
    """Arrival times (float64 s, non-decreasing) of `num_requests` requests at a mean `rate` req/s.

    `poisson`: exponential gaps. `gamma`: gamma gaps with coefficient of variation `cv`
    (shape 1/cv², scale cv²/rate, so the mean gap is 1/rate; cv > 1 is burstier than Poisson).
    `constant`: gaps of exactly 1/rate. `batch`: every request at 0 (an offline batch; rate unused).
    Convention for the first request: with random gaps, request i arrives at the sum of the
    first i+1 gaps (the stream is observed from 0, so the first arrival is one gap after 0);
    with constant gaps, request i arrives at i/rate (the first at 0).
    """
    if process not in ARRIVAL_PROCESSES:
        raise TraceError(
            f"unknown arrival process {process!r}. Use one of the processes: {', '.join(ARRIVAL_PROCESSES)}."
        )
    if not _is_real(rate) or not math.isfinite(rate) or rate <= 0:
        raise TraceError(f"arrival rate must be a positive number of requests per second, got {rate!r}.")
    if not _is_integer(num_requests) or num_requests < 0:
        raise TraceError(f"the number of requests must be a whole number >= 0, got {num_requests!r}.")
    if process != "gamma":
        if cv is not None:
            raise TraceError(f"cv (got {cv!r}) applies only to the gamma process; remove it or use process gamma.")
        if process == "constant":
            return np.arange(num_requests, dtype=np.float64) / rate
        if process == "batch":
            return np.zeros(num_requests, dtype=np.float64)
        return np.cumsum(rng.exponential(1.0 / rate, num_requests))
    if cv is None or not _is_real(cv) or not math.isfinite(cv) or cv <= 0:
        raise TraceError(f"the gamma arrival process needs a coefficient of variation cv > 0, got {cv!r}.")
    return np.cumsum(rng.gamma(1.0 / cv**2, cv**2 / rate, num_requests))


def sample_lengths(spec: Mapping[str, Any], num: int, rng: np.random.Generator, origin: str) -> np.ndarray:
    """`num` token counts (int64 >= 1) from the distribution `spec` describes; `origin` is its config key.

    `{dist: fixed, value}`; `{dist: uniform, min, max}` (inclusive); `{dist: lognormal, mean,
    sigma, min?, max?}` where mean is the distribution's mean in tokens (mu = ln(mean) - sigma²/2);
    `{dist: normal, mean, std, min?, max?}`; `{dist: empirical, values: [...]}` or
    `{dist: empirical, path, column, format?}` drawing from a column (prompt_tokens or
    output_tokens) of a length table, or of a trace in `format`. Continuous draws are rounded
    and clipped to [min (default 1), max].
    """
    if not isinstance(spec, Mapping):
        raise TraceError(f"{origin}: expected a mapping such as {{dist: fixed, value: 256}}, got {spec!r}.")
    if not _is_integer(num) or num < 0:
        raise TraceError(f"{origin}: the number of lengths to draw must be a whole number >= 0, got {num!r}.")
    dist = spec.get("dist")
    if dist not in LENGTH_DISTRIBUTIONS:
        got = "no dist key" if "dist" not in spec else repr(dist)
        raise TraceError(
            f"{origin}.dist: unknown distribution, got {got}. Use one of: {', '.join(LENGTH_DISTRIBUTIONS)}."
        )
    params = {k: v for k, v in spec.items() if k != "dist"}
    if dist == "empirical":
        return rng.choice(_empirical_values(params, origin), num)
    _expect(params, origin, *LENGTH_PARAMETERS[dist])
    if dist == "fixed":
        return np.full(num, _tokens(params, "value", origin), dtype=np.int64)
    if dist == "uniform":
        low, high = _bounds(params, origin)
        assert high is not None  # uniform requires max: _expect checked it
        return rng.integers(low, high + 1, num, dtype=np.int64)
    if dist == "lognormal":
        mean, sigma = _number(params, "mean", origin, positive=True), _number(params, "sigma", origin)
        if sigma > MAX_LOGNORMAL_SIGMA:
            raise TraceError(
                f"{origin}.sigma: {sigma:g} puts the median at {mean * math.exp(-sigma**2 / 2):.3g} tokens, "
                f"so almost every draw is 1 token and the mean of {mean:g} rests on a few enormous ones. "
                f"Real length distributions have sigma between 0.3 and 2; use at most {MAX_LOGNORMAL_SIGMA}."
            )
        draws = rng.lognormal(math.log(mean) - sigma**2 / 2, sigma, num)
    else:
        draws = rng.normal(_number(params, "mean", origin, positive=True), _number(params, "std", origin), num)
    low, high = _bounds(params, origin)
    return np.clip(np.rint(draws), low, high if high is not None else MAX_DRAWN_TOKENS).astype(np.int64)


def sample_length_pairs(
    path: str | Path, num: int, rng: np.random.Generator, format: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of a length table (or of a trace in `format`) drawn jointly, with replacement.

    Prompt and output lengths are correlated in real data (a long document gets a long
    summary), so when both come from one file, drawing whole rows keeps that correlation.
    """
    if not _is_integer(num) or num < 0:
        raise TraceError(f"{path}: the number of length pairs to draw must be a whole number >= 0, got {num!r}.")
    table = load_length_table(path) if format is None else load_trace(path, format)
    rows = rng.integers(0, len(table), num)
    return table["prompt_tokens"].to_numpy()[rows], table["output_tokens"].to_numpy()[rows]


def _empirical_values(params: Mapping[str, Any], origin: str) -> np.ndarray:
    if "values" in params:
        _expect(params, origin, ("values",), ())
        values = params["values"]
        if (
            isinstance(values, (str, bytes))
            or not isinstance(values, Sequence)
            or not values
            or not all(_is_integer(v) and v >= 1 for v in values)
        ):
            raise TraceError(f"{origin}.values: expected a non-empty list of token counts >= 1, got {values!r}.")
        return np.asarray(values, dtype=np.int64)
    _expect(params, origin, ("path", "column"), ("format",))
    column = params["column"]
    if column not in ("prompt_tokens", "output_tokens"):
        raise TraceError(f"{origin}.column: expected prompt_tokens or output_tokens, got {column!r}.")
    fmt = params.get("format")
    table = load_length_table(params["path"]) if fmt is None else load_trace(params["path"], fmt)
    return table[column].to_numpy()


def _expect(params: Mapping[str, Any], origin: str, required: tuple[str, ...], optional: tuple[str, ...]) -> None:
    takes = ", ".join(required + optional)
    missing = [k for k in required if k not in params]
    if missing:
        raise TraceError(f"{origin}.{missing[0]}: missing. This distribution takes {takes}.")
    unknown = [str(k) for k in params if k not in required + optional]
    if unknown:
        raise TraceError(f"{origin}.{unknown[0]}: unknown key. This distribution takes {takes}.")


def _tokens(params: Mapping[str, Any], key: str, origin: str) -> int:
    value = params[key]
    if not _is_integer(value) or value < 1:
        raise TraceError(f"{origin}.{key}: expected a whole number of tokens >= 1, got {value!r}.")
    return int(value)


def _number(params: Mapping[str, Any], key: str, origin: str, positive: bool = False) -> float:
    value = params[key]
    if not _is_real(value) or not math.isfinite(value) or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise TraceError(f"{origin}.{key}: expected a number {bound}, got {value!r}.")
    return float(value)


def _bounds(params: Mapping[str, Any], origin: str) -> tuple[int, int | None]:
    low = _tokens(params, "min", origin) if "min" in params else 1
    high = _tokens(params, "max", origin) if "max" in params else None
    if high is not None and high < low:
        raise TraceError(f"{origin}.max: {high} is below min ({low}). Make max >= min.")
    return low, high


def _is_integer(value: object) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)

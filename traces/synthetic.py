"""Synthetic workloads: arrival processes and request-length distributions.

Every function takes a `numpy.random.Generator`, so the caller owns the seed stream and the
same seed gives the same workload. Specifications come from user configs, so every problem
is a TraceError naming the config key (`origin`) and the fix.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
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
    _check_process(process, rate)
    if not _is_integer(num_requests) or num_requests < 0:
        raise TraceError(f"the number of requests must be a whole number >= 0, got {num_requests!r}.")
    return ArrivalStream(process, rate, rng, cv).draw(num_requests)


class ArrivalStream:
    """`arrival_times` drawn a chunk at a time: the chunks, joined, are the times one call gives.

    NumPy draws each gap from the generator's stream in turn, however many are asked for at
    once, and the running sum carries each chunk's last time into the next one's first sum.
    """

    def __init__(self, process: str, rate: float, rng: np.random.Generator, cv: float | None = None) -> None:
        _check_process(process, rate)
        if process != "gamma" and cv is not None:
            raise TraceError(f"cv (got {cv!r}) applies only to the gamma process; remove it or use process gamma.")
        if process == "gamma" and (cv is None or not _is_real(cv) or not math.isfinite(cv) or cv <= 0):
            raise TraceError(f"the gamma arrival process needs a coefficient of variation cv > 0, got {cv!r}.")
        self.process, self.rate, self.cv = process, rate, cv
        self._rng = rng
        self._num_drawn = 0
        self._last_s = 0.0

    def draw(self, num: int) -> np.ndarray:
        """The next `num` arrival times."""
        first, self._num_drawn = self._num_drawn, self._num_drawn + num
        if self.process == "constant":
            return np.arange(first, first + num, dtype=np.float64) / self.rate
        if self.process == "batch":
            return np.zeros(num, dtype=np.float64)
        if self.process == "gamma":
            assert self.cv is not None
            gaps = self._rng.gamma(1.0 / self.cv**2, self.cv**2 / self.rate, num)
        else:
            gaps = self._rng.exponential(1.0 / self.rate, num)
        times = np.cumsum(np.concatenate(([self._last_s], gaps)))[1:]  # one running sum, as over all gaps
        if num:
            self._last_s = float(times[-1])
        return times


def sample_lengths(spec: Mapping[str, Any], num: int, rng: np.random.Generator, origin: str) -> np.ndarray:
    """`num` token counts (int64 >= 1) from the distribution `spec` describes; `origin` is its config key.

    `{dist: fixed, value}`; `{dist: uniform, min, max}` (inclusive); `{dist: lognormal, mean,
    sigma, min?, max?}` where mean is the distribution's mean in tokens (mu = ln(mean) - sigma²/2);
    `{dist: normal, mean, std, min?, max?}`; `{dist: empirical, values: [...]}` or
    `{dist: empirical, path, column, format?}` drawing from a column (prompt_tokens or
    output_tokens) of a length table, or of a trace in `format`. Continuous draws are rounded
    and clipped to [min (default 1), max].
    """
    _check_spec(spec, origin)
    if not _is_integer(num) or num < 0:
        raise TraceError(f"{origin}: the number of lengths to draw must be a whole number >= 0, got {num!r}.")
    return length_sampler(spec, origin)(rng, num)


LengthSampler = Callable[[np.random.Generator, int], np.ndarray]
"""Draws the next `num` lengths from `rng`: called chunk by chunk, it gives the lengths of one call."""


def length_sampler(spec: Mapping[str, Any], origin: str) -> LengthSampler:
    """`sample_lengths`' distribution, checked (and its table read) once, to draw from a chunk at a time."""
    _check_spec(spec, origin)
    dist = spec.get("dist")
    if dist not in LENGTH_DISTRIBUTIONS:
        got = "no dist key" if "dist" not in spec else repr(dist)
        raise TraceError(
            f"{origin}.dist: unknown distribution, got {got}. Use one of: {', '.join(LENGTH_DISTRIBUTIONS)}."
        )
    params = {k: v for k, v in spec.items() if k != "dist"}
    if dist == "empirical":
        values = _empirical_values(params, origin)
        return lambda rng, num: rng.choice(values, num)
    _expect(params, origin, *LENGTH_PARAMETERS[dist])
    if dist == "fixed":
        value = _tokens(params, "value", origin)
        return lambda rng, num: np.full(num, value, dtype=np.int64)
    if dist == "uniform":
        low, high = _bounds(params, origin)
        assert high is not None  # uniform requires max: _expect checked it
        above = high + 1
        return lambda rng, num: rng.integers(low, above, num, dtype=np.int64)
    if dist == "lognormal":
        mean, sigma = _number(params, "mean", origin, positive=True), _number(params, "sigma", origin)
        if sigma > MAX_LOGNORMAL_SIGMA:
            raise TraceError(
                f"{origin}.sigma: {sigma:g} puts the median at {mean * math.exp(-sigma**2 / 2):.3g} tokens, "
                f"so almost every draw is 1 token and the mean of {mean:g} rests on a few enormous ones. "
                f"Real length distributions have sigma between 0.3 and 2; use at most {MAX_LOGNORMAL_SIGMA}."
            )
        mu = math.log(mean) - sigma**2 / 2
        low, high = _bounds(params, origin)
        return lambda rng, num: _rounded(rng.lognormal(mu, sigma, num), low, high)
    mean, std = _number(params, "mean", origin, positive=True), _number(params, "std", origin)
    low, high = _bounds(params, origin)
    return lambda rng, num: _rounded(rng.normal(mean, std, num), low, high)


def sample_length_pairs(
    path: str | Path, num: int, rng: np.random.Generator, format: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of a length table (or of a trace in `format`) drawn jointly, with replacement.

    Prompt and output lengths are correlated in real data (a long document gets a long
    summary), so when both come from one file, drawing whole rows keeps that correlation.
    """
    if not _is_integer(num) or num < 0:
        raise TraceError(f"{path}: the number of length pairs to draw must be a whole number >= 0, got {num!r}.")
    return length_pair_sampler(path, format)(rng, num)


def length_pair_sampler(path: str | Path, format: str | None = None
                        ) -> Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]:
    """`sample_length_pairs`' table, read once, to draw rows from a chunk at a time."""
    table = load_length_table(path) if format is None else load_trace(path, format)
    prompts, outputs = table["prompt_tokens"].to_numpy(), table["output_tokens"].to_numpy()

    def draw(rng: np.random.Generator, num: int) -> tuple[np.ndarray, np.ndarray]:
        rows = rng.integers(0, len(prompts), num)
        return prompts[rows], outputs[rows]

    return draw


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


def _check_process(process: str, rate: float) -> None:
    if process not in ARRIVAL_PROCESSES:
        raise TraceError(
            f"unknown arrival process {process!r}. Use one of the processes: {', '.join(ARRIVAL_PROCESSES)}."
        )
    if not _is_real(rate) or not math.isfinite(rate) or rate <= 0:
        raise TraceError(f"arrival rate must be a positive number of requests per second, got {rate!r}.")


def _check_spec(spec: object, origin: str) -> None:
    if not isinstance(spec, Mapping):
        raise TraceError(f"{origin}: expected a mapping such as {{dist: fixed, value: 256}}, got {spec!r}.")


def _rounded(draws: np.ndarray, low: int, high: int | None) -> np.ndarray:
    return np.clip(np.rint(draws), low, high if high is not None else MAX_DRAWN_TOKENS).astype(np.int64)


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

"""Arrival processes and length distributions: moments, bounds, determinism, and bad specs."""
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.traces import (
    TraceError,
    add_shared_prefixes,
    arrival_times,
    sample_length_pairs,
    sample_lengths,
    sample_path,
)
from servesim.traces.synthetic import MAX_DRAWN_TOKENS


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def gaps(times: np.ndarray) -> np.ndarray:
    return np.diff(times, prepend=0.0)


# --- arrivals ------------------------------------------------------------------------------


def test_poisson_gaps_have_mean_one_over_rate_and_cv_one():
    g = gaps(arrival_times("poisson", 4.0, 20_000, rng()))
    assert g.mean() == pytest.approx(0.25, rel=0.03)
    assert g.std() / g.mean() == pytest.approx(1.0, rel=0.05)


@pytest.mark.parametrize("cv", [0.5, 3.0])
def test_gamma_gaps_have_the_requested_cv(cv):
    g = gaps(arrival_times("gamma", 2.0, 20_000, rng(1), cv=cv))
    assert g.mean() == pytest.approx(0.5, rel=0.1)
    assert g.std() / g.mean() == pytest.approx(cv, rel=0.1)


def test_constant_arrivals_are_exact_and_start_at_zero():
    assert arrival_times("constant", 4.0, 4, rng()).tolist() == [0.0, 0.25, 0.5, 0.75]


def test_random_processes_start_one_gap_after_zero():
    times = arrival_times("poisson", 1.0, 3, rng(2))
    first_gap = np.random.default_rng(2).exponential(1.0, 3)[0]
    assert times[0] == pytest.approx(first_gap) and times[0] > 0


def test_zero_requests_give_no_arrivals():
    assert arrival_times("gamma", 1.0, 0, rng(), cv=2.0).shape == (0,)


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        (("gamma", 1.0, 3), {}, "needs a coefficient of variation cv > 0, got None"),
        (("gamma", 1.0, 3), {"cv": -1.0}, "cv > 0, got -1.0"),
        (("poisson", 1.0, 3), {"cv": 2.0}, "applies only to the gamma process"),
        (("poisson", -1.0, 3), {}, "positive number of requests per second, got -1.0"),
        (("poisson", float("inf"), 3), {}, "positive number"),
        (("constant", 1.0, -2), {}, "whole number >= 0, got -2"),
        (("bursty", 1.0, 3), {}, "processes: poisson, gamma, constant"),
    ],
)
def test_bad_arrival_specs_raise(args, kwargs, message):
    with pytest.raises(TraceError, match=message):
        arrival_times(*args, rng(), **kwargs)


def test_same_seed_same_arrivals_and_lengths():
    spec = {"dist": "lognormal", "mean": 500, "sigma": 1.0}
    for process, cv in (("poisson", None), ("gamma", 2.0)):
        np.testing.assert_array_equal(arrival_times(process, 2.0, 100, rng(5), cv),
                                      arrival_times(process, 2.0, 100, rng(5), cv))
    np.testing.assert_array_equal(sample_lengths(spec, 100, rng(5), "w"), sample_lengths(spec, 100, rng(5), "w"))
    assert not np.array_equal(sample_lengths(spec, 100, rng(5), "w"), sample_lengths(spec, 100, rng(6), "w"))


@settings(max_examples=60)
@given(
    st.sampled_from(["poisson", "gamma", "constant"]),
    st.floats(0.01, 1000),
    st.integers(0, 300),
    st.floats(0.1, 10),
    st.integers(0, 2**32 - 1),
)
def test_arrivals_are_non_decreasing_and_non_negative(process, rate, n, cv, seed):
    times = arrival_times(process, rate, n, rng(seed), cv=cv if process == "gamma" else None)
    assert times.shape == (n,) and times.dtype == np.float64
    assert np.all(np.diff(times) >= 0) and np.all(times >= 0)


# --- lengths -------------------------------------------------------------------------------


def test_lognormal_mean_is_the_requested_mean():
    values = sample_lengths({"dist": "lognormal", "mean": 1000, "sigma": 0.8}, 50_000, rng(), "w.prompt")
    assert values.mean() == pytest.approx(1000, rel=0.03)
    assert values.dtype == np.int64 and values.min() >= 1


def test_normal_mean_and_clipping():
    values = sample_lengths({"dist": "normal", "mean": 300, "std": 50}, 20_000, rng(), "w")
    assert values.mean() == pytest.approx(300, rel=0.02)
    clipped = sample_lengths({"dist": "normal", "mean": 10, "std": 100, "min": 4, "max": 20}, 2_000, rng(), "w")
    assert clipped.min() == 4 and clipped.max() == 20


def test_fixed_and_uniform_bounds():
    assert sample_lengths({"dist": "fixed", "value": 7}, 10, rng(), "o").tolist() == [7] * 10
    uniform = sample_lengths({"dist": "uniform", "min": 3, "max": 5}, 1000, rng(), "o")
    assert set(uniform.tolist()) == {3, 4, 5} and uniform.dtype == np.int64


def test_empirical_from_values_and_from_a_length_table_column():
    values = sample_lengths({"dist": "empirical", "values": [2, 9]}, 100, rng(), "o")
    assert set(values.tolist()) == {2, 9}
    path = str(sample_path("sharegpt_lengths"))
    column = sample_lengths({"dist": "empirical", "path": path, "column": "output_tokens"}, 500, rng(), "o")
    assert set(column.tolist()) <= set(pd.read_csv(path)["num_decode_tokens"])


def test_empirical_from_a_trace_in_any_format():
    spec = {"dist": "empirical", "path": str(sample_path("azure_conv")), "column": "prompt_tokens", "format": "azure"}
    values = sample_lengths(spec, 300, rng(), "o")
    trace = pd.read_csv(sample_path("azure_conv"))
    assert set(values.tolist()) <= set(trace["ContextTokens"])


def test_pairs_keep_rows_together():
    prompts, outputs = sample_length_pairs(sample_path("sharegpt_lengths"), 500, rng())
    table = pd.read_csv(sample_path("sharegpt_lengths"))
    rows = set(zip(table["num_prefill_tokens"], table["num_decode_tokens"], strict=True))
    assert all(pair in rows for pair in zip(prompts.tolist(), outputs.tolist(), strict=True))
    a = sample_length_pairs(sample_path("sharegpt_lengths"), 50, rng(3))
    b = sample_length_pairs(sample_path("sharegpt_lengths"), 50, rng(3))
    np.testing.assert_array_equal(a[0], b[0])


def test_pairs_from_a_trace():
    prompts, outputs = sample_length_pairs(sample_path("mooncake_conversation"), 20, rng(), format="mooncake")
    assert prompts.shape == outputs.shape == (20,)


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"dist": "zipf"}, r"w\.dist: unknown distribution, got 'zipf'. Use one of: fixed, uniform"),
        ({"value": 3}, r"w\.dist: unknown distribution, got no dist key"),
        ({"dist": "fixed"}, r"w\.value: missing\. This distribution takes value"),
        ({"dist": "fixed", "value": 0}, r"w\.value: expected a whole number of tokens >= 1, got 0"),
        ({"dist": "fixed", "value": True}, r"w\.value: expected a whole number"),
        ({"dist": "uniform", "min": 5, "max": 2}, r"w\.max: 2 is below min \(5\)"),
        ({"dist": "lognormal", "mean": 10, "sigma": 1, "mode": 3}, r"w\.mode: unknown key"),
        ({"dist": "lognormal", "mean": -10, "sigma": 1}, r"w\.mean: expected a number > 0, got -10"),
        ({"dist": "lognormal", "mean": 10, "sigma": "wide"}, r"w\.sigma: expected a number >= 0, got 'wide'"),
        ({"dist": "normal", "mean": 10, "std": 1, "max": 0.5}, r"w\.max: expected a whole number"),
        ({"dist": "empirical", "values": []}, r"w\.values: expected a non-empty list"),
        ({"dist": "empirical", "values": [3, 0]}, r"w\.values: expected a non-empty list of token counts >= 1"),
        ({"dist": "empirical", "path": "x.csv"}, r"w\.column: missing"),
        ({"dist": "empirical", "path": "x.csv", "column": "arrival_s"}, r"w\.column: expected prompt_tokens or"),
        ({"dist": "empirical", "path": "/nonexistent/x.csv", "column": "prompt_tokens"}, "no such length table"),
    ],
)
def test_bad_length_specs_name_the_key(spec, message):
    with pytest.raises(TraceError, match=message):
        sample_lengths(spec, 3, rng(), "w")


def test_spec_must_be_a_mapping():
    with pytest.raises(TraceError, match="w: expected a mapping"):
        sample_lengths(["fixed", 3], 3, rng(), "w")


@settings(max_examples=60)
@given(
    st.sampled_from(["lognormal", "normal", "uniform"]),
    st.integers(1, 50),
    st.integers(0, 100),
    st.floats(0.0, 3.0),
    st.integers(0, 2**32 - 1),
)
def test_lengths_stay_within_bounds(dist, low, spread, sigma, seed):
    spec = {"dist": dist, "min": low, "max": low + spread}
    if dist == "lognormal":
        spec |= {"mean": 100, "sigma": sigma}
    elif dist == "normal":
        spec |= {"mean": 100, "std": 100 * sigma}
    values = sample_lengths(spec, 200, rng(seed), "w")
    assert values.dtype == np.int64 and values.shape == (200,)
    assert values.min() >= low and values.max() <= low + spread


def test_a_huge_number_of_prefix_groups_builds_only_the_chains_used():
    table = pd.DataFrame({"arrival_s": [0.0, 1.0, 2.0], "prompt_tokens": [5, 5, 5], "output_tokens": [1, 1, 1]})
    out = add_shared_prefixes(table, 10**12, 64, 1.0, np.random.default_rng(0))
    assert all(len(h) == 4 and all(isinstance(i, int) for i in h) for h in out["prefix_hashes"])


def test_a_lognormal_sigma_that_hides_the_mean_is_refused():
    with pytest.raises(TraceError, match="sigma: 1000 puts the median"):
        sample_lengths({"dist": "lognormal", "mean": 100, "sigma": 1000}, 5, np.random.default_rng(0), origin="x")


def test_enormous_draws_are_clipped_below_int64_overflow():
    draws = sample_lengths({"dist": "normal", "mean": 100, "std": 1e308}, 50, np.random.default_rng(0), origin="x")
    assert draws.min() >= 1 and draws.max() == MAX_DRAWN_TOKENS

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from traces import TraceError, arrival_times, sample_length_pairs, sample_lengths, sample_path, scale_rate, take, time_window


def rng(seed=0):
    return np.random.default_rng(seed)


def test_poisson_gaps_have_the_rate_and_cv_one():
    gaps = np.diff(arrival_times("poisson", 4.0, 20_000, rng()), prepend=0.0)
    assert gaps.mean() == pytest.approx(0.25, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.05)


def test_gamma_gaps_have_the_requested_cv():
    gaps = np.diff(arrival_times("gamma", 2.0, 20_000, rng(), cv=3.0), prepend=0.0)
    assert gaps.mean() == pytest.approx(0.5, rel=0.1)
    assert gaps.std() / gaps.mean() == pytest.approx(3.0, rel=0.1)


def test_constant_arrivals_are_exact():
    assert arrival_times("constant", 4.0, 4, rng()).tolist() == [0.25, 0.5, 0.75, 1.0]


def test_bad_arrival_specs_raise():
    with pytest.raises(TraceError, match="needs a coefficient of variation"):
        arrival_times("gamma", 1.0, 3, rng())
    with pytest.raises(TraceError, match="positive number"):
        arrival_times("poisson", -1.0, 3, rng())
    with pytest.raises(TraceError, match="processes: poisson, gamma, constant"):
        arrival_times("bursty", 1.0, 3, rng())


def test_lognormal_mean_is_the_requested_mean():
    values = sample_lengths({"dist": "lognormal", "mean": 1000, "sigma": 0.8}, 50_000, rng(), "w.prompt")
    assert values.mean() == pytest.approx(1000, rel=0.03)
    assert values.dtype == np.int64 and values.min() >= 1


def test_fixed_uniform_and_empirical():
    assert set(sample_lengths({"dist": "fixed", "value": 7}, 10, rng(), "o").tolist()) == {7}
    uniform = sample_lengths({"dist": "uniform", "min": 3, "max": 5}, 1000, rng(), "o")
    assert set(uniform.tolist()) == {3, 4, 5}
    empirical = sample_lengths({"dist": "empirical", "values": [2, 9]}, 100, rng(), "o")
    assert set(empirical.tolist()) <= {2, 9}
    column = sample_lengths(
        {"dist": "empirical", "path": str(sample_path("sharegpt_lengths")), "column": "output_tokens"}, 100, rng(), "o"
    )
    assert column.min() >= 1


def test_pairs_keep_rows_together():
    prompts, outputs = sample_length_pairs(sample_path("sharegpt_lengths"), 500, rng())
    table = pd.read_csv(sample_path("sharegpt_lengths"))
    rows = set(zip(table["num_prefill_tokens"], table["num_decode_tokens"]))
    assert all(pair in rows for pair in zip(prompts.tolist(), outputs.tolist()))


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"dist": "zipf"}, "unknown dist 'zipf'"),
        ({"dist": "fixed"}, "missing value"),
        ({"dist": "fixed", "value": 0}, r"w\.value: expected a whole number"),
        ({"dist": "uniform", "min": 5, "max": 2}, "max \\(2\\) is below min \\(5\\)"),
        ({"dist": "lognormal", "mean": 10, "sigma": 1, "mode": 3}, "unknown key\\(s\\) mode"),
    ],
)
def test_bad_length_specs_name_the_key(spec, message):
    with pytest.raises(TraceError, match=message):
        sample_lengths(spec, 3, rng(), "w")


def test_same_seed_same_workload():
    a = arrival_times("poisson", 2.0, 100, rng(5))
    b = arrival_times("poisson", 2.0, 100, rng(5))
    np.testing.assert_array_equal(a, b)


@given(st.sampled_from(["poisson", "gamma", "constant"]), st.floats(0.01, 100), st.integers(0, 200), st.integers(0, 9))
def test_arrivals_never_go_backwards(process, rate, n, seed):
    times = arrival_times(process, rate, n, rng(seed), cv=2.0)
    assert len(times) == n and np.all(np.diff(times) >= 0) and np.all(times >= 0)


@given(st.integers(1, 50), st.integers(0, 100), st.floats(0.1, 3.0))
def test_lengths_respect_bounds(low, spread, sigma):
    values = sample_lengths({"dist": "lognormal", "mean": 100, "sigma": sigma, "min": low, "max": low + spread}, 200, rng(), "w")
    assert values.min() >= low and values.max() <= low + spread


def test_transforms():
    table = pd.DataFrame({"arrival_s": [0.0, 1.0, 2.0, 3.0], "prompt_tokens": [1] * 4, "output_tokens": [1] * 4})
    assert scale_rate(table, 2.0)["arrival_s"].tolist() == [0.0, 0.5, 1.0, 1.5]
    assert time_window(table, 1.0, 3.0)["arrival_s"].tolist() == [0.0, 1.0]
    assert len(take(table, 2)) == 2
    with pytest.raises(TraceError, match="no request arrives"):
        time_window(table, 10.0, None)
    with pytest.raises(TraceError, match="must be > 0"):
        scale_rate(table, 0)

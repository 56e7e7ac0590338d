"""Arrival times written as dates are shifted to start at 0 (with a note); unknown far starts are refused."""
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from servesim.traces import TraceError, load_trace
from servesim.traces.arrival_origin import (
    EPOCH_2000_S,
    EPOCH_2100_S,
    FAR_FROM_ZERO_S,
    UNIT_SECONDS,
    ArrivalShiftWarning,
    arrivals_from_start,
)

NOV_2023 = 1_700_000_000.0


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_epoch_dates_in_any_unit_are_shifted_to_zero_and_made_seconds(unit):
    arrivals = (NOV_2023 + np.array([0.0, 1.5, 4.0])) / UNIT_SECONDS[unit]
    with pytest.warns(ArrivalShiftWarning, match="since 1970"):
        seconds = arrivals_from_start(arrivals, "t.csv")
    np.testing.assert_allclose(seconds, [0.0, 1.5, 4.0], atol=1e-6)


def test_arrivals_near_zero_are_left_alone_without_a_note():
    arrivals = np.array([5.0, 6.0, 9_000_000.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert arrivals_from_start(arrivals, "t.csv") is arrivals


@pytest.mark.parametrize("first", [FAR_FROM_ZERO_S, 5e10, 5e20])
def test_a_far_start_that_is_no_date_is_refused_with_how_to_declare_the_unit(first):
    with pytest.raises(TraceError, match="arrival_unit"):
        arrivals_from_start(np.array([first, first + 1]), "t.csv")


def test_a_trace_running_past_2100_is_no_date():
    with pytest.raises(TraceError, match="no date"):
        arrivals_from_start(np.array([NOV_2023, EPOCH_2100_S + 1]), "t.csv")


def test_a_declared_unit_converts_and_shifts_only_far_starts():
    np.testing.assert_allclose(arrivals_from_start(np.array([0.0, 1500.0]), "t", "ms"), [0.0, 1.5])
    with pytest.warns(ArrivalShiftWarning):
        shifted = arrivals_from_start(np.array([5e10, 5e10 + 2000]), "t", "ms")
    np.testing.assert_allclose(shifted, [0.0, 2.0])
    with pytest.raises(TraceError, match="arrival_unit must be one of"):
        arrivals_from_start(np.array([0.0]), "t", "minutes")


@given(st.floats(EPOCH_2000_S, EPOCH_2100_S - 1e6), st.lists(st.floats(0, 1000), min_size=1, max_size=20),
       st.sampled_from(["s", "ms", "us"]))
def test_shifting_keeps_every_gap(start, gaps, unit):
    offsets = np.cumsum([0.0, *gaps])
    arrivals = (start + offsets) / UNIT_SECONDS[unit]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ArrivalShiftWarning)
        seconds = arrivals_from_start(arrivals, "t")
    assert seconds[0] == 0.0
    np.testing.assert_allclose(seconds, offsets - offsets[0], atol=1e-3)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_the_canonical_loaders_shift_like_the_azure_and_mooncake_ones(tmp_path: Path, fmt):
    path = tmp_path / f"t.{fmt}"
    if fmt == "csv":
        path.write_text("arrival_s,prompt_tokens,output_tokens\n1700000000000,10,5\n1700000002500,12,6\n")
    else:
        path.write_text('{"arrival_s": 1700000000000, "prompt_tokens": 10, "output_tokens": 5}\n'
                        '{"arrival_s": 1700000002500, "prompt_tokens": 12, "output_tokens": 6}\n')
    with pytest.warns(ArrivalShiftWarning, match="milliseconds"):
        table = load_trace(path, fmt)
    assert table["arrival_s"].tolist() == [0.0, 2.5]
    assert table["prompt_tokens"].tolist() == [10, 12]
    with pytest.warns(ArrivalShiftWarning, match="as declared"):
        assert load_trace(path, fmt, arrival_unit="s")["arrival_s"].tolist() == [0.0, 2500.0]

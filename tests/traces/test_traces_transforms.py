"""Rate scaling, time windows and truncation of canonical tables."""
import pandas as pd
import pytest

from servesim.traces import TraceError, load_trace, sample_path, scale_rate, take, time_window


def table() -> pd.DataFrame:
    return pd.DataFrame({"arrival_s": [0.0, 1.0, 2.0, 3.0], "prompt_tokens": [1, 2, 3, 4], "output_tokens": [1] * 4})


def test_scale_rate_divides_arrival_times():
    original = table()
    scaled = scale_rate(original, 2.0)
    assert scaled["arrival_s"].tolist() == [0.0, 0.5, 1.0, 1.5]
    assert original["arrival_s"].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert scale_rate(original, 0.5)["arrival_s"].tolist() == [0.0, 2.0, 4.0, 6.0]


def test_scale_rate_doubles_the_measured_rate_of_a_real_trace():
    trace = load_trace(sample_path("azure_conv"), "azure")
    scaled = scale_rate(trace, 2.0)
    assert len(scaled) / scaled["arrival_s"].iloc[-1] == pytest.approx(2 * len(trace) / trace["arrival_s"].iloc[-1])


def test_time_window_keeps_start_inclusive_end_exclusive_and_shifts_by_start():
    window = time_window(table(), 0.5, 3.0)
    assert window["arrival_s"].tolist() == [0.5, 1.5]
    assert window["prompt_tokens"].tolist() == [2, 3]
    assert time_window(table(), 1.0, None)["arrival_s"].tolist() == [0.0, 1.0, 2.0]
    assert list(time_window(table(), 1.0, None).index) == [0, 1, 2]


def test_take():
    assert take(table(), 2)["prompt_tokens"].tolist() == [1, 2]
    assert len(take(table(), 100)) == 4


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda t: scale_rate(t, 0), "must be a number > 0, got 0"),
        (lambda t: scale_rate(t, float("nan")), "must be a number > 0"),
        (lambda t: time_window(t, 10.0, None),
         r"no request arrives in the window \[10.0, None\) s; the trace's arrivals end at 3 s"),
        (lambda t: time_window(t, 2.0, 1.0), "must be after its start"),
        (lambda t: time_window(t, -1.0, 1.0), "start must be a number of seconds >= 0"),
        (lambda t: take(t, 0), "whole number >= 1, got 0"),
    ],
)
def test_bad_arguments(call, message):
    with pytest.raises(TraceError, match=message):
        call(table())

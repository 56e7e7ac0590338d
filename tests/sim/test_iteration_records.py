"""Iteration records spilled in sorted runs and merged: the table the in-memory stable sort gave, row for row."""
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import servesim.sim.reporting.iteration_records as records
from servesim.sim.experiment.loading import validate_config
from servesim.sim.reporting.iteration_records import ITERATION_COLUMNS, IterationRecorder
from servesim.sim.runner import prepare, simulate

# (stretch?, replica, start, length, batch size): starts are few distinct values, so ties are common
EVENTS = st.lists(st.tuples(st.booleans(), st.integers(0, 2), st.integers(0, 6), st.integers(1, 4),
                            st.integers(1, 9)), max_size=60)


def whole_sort(singles: list[tuple], stretches: list[pd.DataFrame]) -> pd.DataFrame:
    """How the table was made before it was spilled: every row in memory, one stable sort."""
    frames = [pd.DataFrame(singles, columns=list(ITERATION_COLUMNS)), *stretches]
    frame = pd.concat([f for f in frames if len(f)], ignore_index=True)
    return frame.sort_values(["start_s", "replica"], kind="stable", ignore_index=True)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=EVENTS, run_rows=st.integers(1, 30), group_rows=st.integers(1, 40))
def test_the_merged_runs_are_the_whole_sort(tmp_path, events, run_rows, group_rows):
    singles: list[tuple] = []
    stretches: list[pd.DataFrame] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(records, "RUN_ROWS", run_rows)
        patch.setattr(records, "RUN_GROUP_ROWS", group_rows)
        patch.setattr(records, "ROWS_PER_GROUP", 5)
        recorder = IterationRecorder(tmp_path / "iterations.parquet")
        for number, (stretch, replica, start, length, batch) in enumerate(events):
            if stretch:
                starts = start + np.arange(length) / 2
                recorder.add_stretch(replica, starts, starts + 0.5, batch)
                stretches.append(pd.DataFrame({
                    "replica": np.full(length, replica), "start_s": starts, "end_s": starts + 0.5,
                    "batch_size": batch, "num_tokens": batch, "num_prefill_tokens": 0, "num_decodes": batch}))
            else:
                row = (replica, float(start), start + 0.25, batch, batch + number, number, batch)
                recorder.add(row)
                singles.append(row)
        path = recorder.close()
    table = pd.read_parquet(path)
    assert list(tmp_path.iterdir()) == [path]  # the runs are gone
    if not events:
        assert table.empty and list(table.columns) == list(ITERATION_COLUMNS)
        return
    pd.testing.assert_frame_equal(table, whole_sort(singles, stretches), check_dtype=False, check_exact=True)
    assert (table.dtypes == [np.int64, np.float64, np.float64, np.int64, np.int64, np.int64, np.int64]).all()


def test_a_run_writes_the_same_iterations_whatever_the_run_size(tmp_path, monkeypatch):
    config = validate_config({
        "cost_model": {"kind": "roofline"}, "cluster": {"replicas": 3},
        "workload": {"arrival": {"process": "poisson", "rate": 30.0}, "num_requests": 400,
                     "prompt_tokens": {"dist": "lognormal", "mean": 300, "sigma": 0.8},
                     "output_tokens": {"dist": "lognormal", "mean": 80, "sigma": 0.8}},
        "output": {"iterations": True, "plots": False}})
    default = simulate(prepare(config)).iterations
    monkeypatch.setattr(records, "RUN_ROWS", 97)
    monkeypatch.setattr(records, "RUN_GROUP_ROWS", 30)
    small = simulate(prepare(config)).iterations
    assert default is not None and small is not None and len(default) > 5 * 97
    pd.testing.assert_frame_equal(small, default, check_exact=True)
    assert default[["start_s", "replica"]].apply(tuple, axis=1).is_monotonic_increasing
    assert simulate(prepare(validate_config({**config.model_dump(), "output": {"iterations": False}}))
                    ).iterations is None

"""validate_trace on in-memory tables: dtypes, order, and errors that name index and column."""
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.traces import OPTIONAL_COLUMNS, REQUIRED_COLUMNS, TraceError, load_trace, validate_trace


def table(**extra) -> pd.DataFrame:
    return pd.DataFrame({"arrival_s": [0, 1, 1], "prompt_tokens": [5, 6, 7], "output_tokens": [1, 2, 3], **extra})


def test_columns_are_declared():
    assert REQUIRED_COLUMNS == ("arrival_s", "prompt_tokens", "output_tokens")
    assert set(OPTIONAL_COLUMNS) == {
        "session_id", "turn", "prefix_hashes", "prefix_block_tokens", "priority", "slo_class", "tenant"
    }


def test_canonical_dtypes_order_and_index():
    raw = table(tenant=["a", "b", "c"], prefix_hashes=[[1], np.array([1, 2]), (3,)], session_id=[1, 1, 2])
    raw.index = [10, 20, 30]
    shuffled = raw[["tenant", "output_tokens", "prefix_hashes", "prompt_tokens", "arrival_s", "session_id"]]
    out = validate_trace(shuffled, "w")
    assert list(out.columns) == ["arrival_s", "prompt_tokens", "output_tokens", "session_id", "prefix_hashes", "tenant"]
    assert out.dtypes["arrival_s"] == np.float64 and out.dtypes["prompt_tokens"] == np.int64
    assert out["prefix_hashes"].tolist() == [(1,), (1, 2), (3,)]
    assert all(type(h) is int for h in out["prefix_hashes"].iloc[1])
    assert out["session_id"].tolist() == ["1", "1", "2"]
    assert isinstance(out.index, pd.RangeIndex)


def test_in_memory_errors_name_the_index_label():
    raw = table(priority=[0, 1, 2])
    raw.index = [10, 20, 30]
    raw.loc[20, "output_tokens"] = 0
    with pytest.raises(TraceError,
                       match="workload: row at index 20, column output_tokens: expected an integer >= 1, got 0"):
        validate_trace(raw, "workload")


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"turn": [0, -1, 2]}, "column turn: expected an integer >= 0, got -1"),
        ({"priority": [0, 1.5, 2]}, "column priority: expected an integer, got 1.5"),
        ({"prefix_block_tokens": [512, 512, 0]}, "column prefix_block_tokens: expected an integer >= 1, got 0"),
        ({"prefix_hashes": [(1,), (2, True), (3,)]},
         r"column prefix_hashes: expected a list of integer block hash ids, got \(2, True\)"),
        ({"prefix_hashes": [(1,), None, (3,)]}, "got nothing"),
        ({"slo_class": ["a", None, "b"]}, "column slo_class: expected a name, got nothing"),
    ],
)
def test_optional_column_errors(extra, message):
    with pytest.raises(TraceError, match=message):
        validate_trace(table(**extra), "w")


def test_required_value_errors():
    with pytest.raises(TraceError,
                       match=r"column arrival_s: expected a number >= 0, got nothing \(the value is missing\)"):
        validate_trace(table().assign(arrival_s=[0, np.nan, 1]), "w")
    with pytest.raises(TraceError, match="column prompt_tokens: expected an integer >= 1, got True"):
        validate_trace(table().assign(prompt_tokens=[True, False, True]), "w")
    with pytest.raises(TraceError, match="row at index 2, column arrival_s: arrival 0.5 s is earlier"):
        validate_trace(table().assign(arrival_s=[0, 1, 0.5]), "w")


def test_structure_errors():
    with pytest.raises(TraceError, match="w: the trace has no requests"):
        validate_trace(table().iloc[:0], "w")
    with pytest.raises(TraceError, match=r"missing column\(s\) output_tokens"):
        validate_trace(table().drop(columns="output_tokens"), "w")
    with pytest.raises(TraceError, match=r"unknown column\(s\) tenants. did you mean 'tenant'"):
        validate_trace(table(tenants=["a"] * 3), "w")
    with pytest.raises(TraceError, match="expected a table"):
        validate_trace([1, 2, 3], "w")


def test_validation_does_not_change_its_input():
    raw = table(prefix_hashes=[[1], [2], [3]])
    validate_trace(raw, "w")
    assert raw["prefix_hashes"].tolist() == [[1], [2], [3]] and raw["arrival_s"].dtype == np.int64


@settings(max_examples=15)
@given(
    st.lists(
        st.tuples(
            st.floats(0, 1e6, allow_nan=False),
            st.integers(1, 10**6),
            st.integers(1, 10**5),
            st.lists(st.integers(0, 2**62), max_size=5),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_canonical_csv_round_trip(rows):
    rows = sorted(rows, key=lambda r: r[0])
    frame = pd.DataFrame(
        {
            "arrival_s": [r[0] for r in rows],
            "prompt_tokens": [r[1] for r in rows],
            "output_tokens": [r[2] for r in rows],
            "prefix_hashes": [" ".join(map(str, r[3])) for r in rows],
        }
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "t.csv"
        frame.to_csv(path, index=False)
        loaded = load_trace(path, "csv")
    assert loaded["arrival_s"].tolist() == [r[0] for r in rows]
    assert loaded["prompt_tokens"].tolist() == [r[1] for r in rows]
    assert loaded["prefix_hashes"].tolist() == [tuple(r[3]) for r in rows]

"""Canonical CSV, JSON Lines and Parquet traces read in chunks give exactly the rows, and the errors, of the
whole-file loaders."""
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servesim.traces import TraceError, load_trace
from servesim.traces.arrival_origin import ArrivalShiftWarning
from servesim.traces.chunked import scan_trace

EPOCH_MS = 1.7e12  # November 2023 in milliseconds since 1970


def write_trace(path: Path, rows: int, seed: int, start_s: float = 0.0, optional: bool = True,
                blank_lines: bool = False) -> Path:
    """A canonical trace of `rows` requests, as CSV, or JSON Lines or Parquet for such a path."""
    rng = np.random.default_rng(seed)
    table = pd.DataFrame({
        "arrival_s": start_s + np.cumsum(rng.exponential(0.37, rows)),
        "prompt_tokens": rng.integers(1, 4000, rows),
        "output_tokens": rng.integers(1, 500, rows),
    })
    if optional:
        table["session_id"] = [f"00{i % 7}" for i in range(rows)]
        table["prefix_hashes"] = [list(range(i % 4)) for i in range(rows)]
        table["prefix_block_tokens"] = 16
        table["priority"] = rng.integers(-2, 3, rows)
        table["slo_class"] = rng.choice(["chat", "batch"], rows)
    if path.suffix == ".parquet":
        table.to_parquet(path, row_group_size=max(1, rows // 3))  # batches cross row groups
        return path
    if path.suffix == ".jsonl":
        gap = "\n\n" if blank_lines else "\n"
        path.write_text(gap.join(json.dumps(record) for record in table.to_dict("records")) + "\n")
        return path
    if optional:
        table["prefix_hashes"] = [" ".join(map(str, ids)) for ids in table["prefix_hashes"]]
    table.to_csv(path, index=False)
    return path


def read_chunked(path: Path, chunk_rows: int, **options) -> tuple[pd.DataFrame, list[int]]:
    chunks = scan_trace(path, path.suffix[1:], chunk_rows, **options)
    assert chunks is not None
    tables = list(chunks)
    return pd.concat(tables, ignore_index=True), [len(t) for t in tables]


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.integers(1, 300), chunk_rows=st.integers(1, 400), seed=st.integers(0, 2**16),
       optional=st.booleans(), epoch=st.booleans(), format=st.sampled_from(["csv", "jsonl", "parquet"]),
       blank_lines=st.booleans())
def test_chunked_reading_equals_whole_file_reading(tmp_path, rows, chunk_rows, seed, optional, epoch, format,
                                                   blank_lines):
    path = write_trace(tmp_path / f"t.{format}", rows, seed, EPOCH_MS if epoch else 0.0, optional, blank_lines)
    options = {"arrival_unit": "ms"} if epoch else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ArrivalShiftWarning)
        whole = load_trace(path, format, **options)
        chunked, sizes = read_chunked(path, chunk_rows, **options)
    pd.testing.assert_frame_equal(chunked, whole, check_exact=True)
    assert max(sizes) <= chunk_rows and sum(sizes) == rows


def test_an_epoch_trace_is_shifted_once_with_one_warning(tmp_path):
    path = write_trace(tmp_path / "t.csv", 50, 1, start_s=1.7e9, optional=False)
    with pytest.warns(ArrivalShiftWarning) as caught:
        chunks = scan_trace(path, "csv", 7)
    assert len(caught) == 1
    assert chunks is not None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        first = next(iter(chunks))
    assert first["arrival_s"].iloc[0] == 0.0


@pytest.mark.parametrize("bad_line, cell, message", [
    (40, "0", r"row 40, column prompt_tokens: expected an integer >= 1, got '0'"),
    (77, "x", r"row 77, column prompt_tokens: expected an integer >= 1, got 'x'"),
])
def test_a_bad_row_in_a_later_chunk_is_named_by_its_file_line(tmp_path, bad_line, cell, message):
    path = write_trace(tmp_path / "t.csv", 100, 2, optional=False)
    lines = path.read_text().splitlines()
    fields = lines[bad_line - 1].split(",")
    fields[1] = cell
    lines[bad_line - 1] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(TraceError, match=message):
        scan_trace(path, "csv", 8)


def test_arrivals_going_backwards_across_a_chunk_boundary_are_named_by_line(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("arrival_s,prompt_tokens,output_tokens\n" + "".join(
        f"{t},5,5\n" for t in (0.0, 1.0, 2.0, 3.0, 2.5, 4.0)))
    with pytest.raises(TraceError, match=r"row 6, column arrival_s: arrival 2\.5 s is earlier than the row before"):
        scan_trace(path, "csv", 4)


def test_missing_and_empty_files_get_the_loaders_message(tmp_path):
    with pytest.raises(TraceError, match="no such trace file"):
        scan_trace(tmp_path / "absent.csv", "csv", 4)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(TraceError, match="the file is empty"):
        scan_trace(empty, "csv", 4)
    header = tmp_path / "header.csv"
    header.write_text("arrival_s,prompt_tokens,output_tokens\n")
    with pytest.raises(TraceError, match="no requests"):
        scan_trace(header, "csv", 4)


def test_jsonl_errors_in_a_later_chunk_are_named_by_their_line(tmp_path):
    path = write_trace(tmp_path / "t.jsonl", 30, 5, optional=False)
    lines = path.read_text().splitlines()
    lines[20] = lines[20].replace('"output_tokens"', '"output_tokenz"')
    lines[25] = "{not json"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(TraceError, match="row 26: not valid JSON"):
        scan_trace(path, "jsonl", 4)
    lines[25] = lines[24]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(TraceError, match="unknown field.*output_tokenz"):
        scan_trace(path, "jsonl", 4)


def test_a_field_only_some_later_rows_have_is_the_error_the_whole_file_gives(tmp_path):
    rows = [{"arrival_s": float(i), "prompt_tokens": 5, "output_tokens": 5} for i in range(10)]
    rows[9]["priority"] = 1
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(TraceError) as whole:
        load_trace(path, "jsonl")
    with pytest.raises(TraceError) as chunked:
        scan_trace(path, "jsonl", 4)
    assert str(chunked.value) == str(whole.value)


def test_options_a_format_does_not_know_are_left_to_load_trace(tmp_path):
    assert scan_trace(tmp_path / "t.csv", "csv", block_tokens=4) is None
    assert scan_trace(tmp_path / "t.csv", "no-such-format") is None


def test_parquet_errors_name_the_row_and_the_file(tmp_path):
    path = write_trace(tmp_path / "t.parquet", 30, 5, optional=False)
    table = pd.read_parquet(path)
    table.loc[21, "output_tokens"] = -3
    table.to_parquet(path)
    with pytest.raises(TraceError, match="row 22, column output_tokens"):
        scan_trace(path, "parquet", 4)
    table.loc[21, "output_tokens"] = 3
    table["prefix_hashes"] = [[1.5]] * 30
    table.to_parquet(path)
    with pytest.raises(TraceError, match="row 1, column prefix_hashes: expected a list of integers"):
        load_trace(path, "parquet")
    path.write_text("arrival_s,prompt_tokens\n")
    with pytest.raises(TraceError, match="not a readable Parquet file"):
        scan_trace(path, "parquet", 4)


def test_a_parquet_trace_equals_the_same_trace_as_csv(tmp_path):
    as_csv = load_trace(write_trace(tmp_path / "t.csv", 50, 9), "csv")
    as_parquet = load_trace(write_trace(tmp_path / "t.parquet", 50, 9), "parquet")
    pd.testing.assert_frame_equal(as_parquet, as_csv, check_exact=True)

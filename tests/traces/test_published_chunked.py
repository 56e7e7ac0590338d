"""The published formats (Azure, Mooncake, RAGPulse) read in chunks give exactly the rows, and the errors,
of their whole-file loaders."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servesim.traces import TraceError, load_trace, sample_path
from servesim.traces.chunked import scan_trace
from tests.traces.test_traces_loaders import AZURE_CONV, MOONCAKE_CONV, RAGPULSE, needs

COMPONENTS = ("sys_prompt", "passages_ids", "history", "web_search", "user_input")


def write_published(path: Path, format: str, rows: int, seed: int, ties: bool = False) -> Path:
    """A trace of `rows` requests as the format publishes them; RAGPulse's rows shuffled (the file is unsorted)."""
    rng = np.random.default_rng(seed)
    gaps = rng.integers(0, 3, rows) if ties else rng.exponential(0.4, rows)
    times = np.cumsum(gaps)
    prompts, outputs = rng.integers(1, 9000, rows), rng.integers(1, 700, rows)
    if format == "azure":
        stamps = pd.Timestamp("2023-11-16 18:15:46.6805900") + pd.to_timedelta(times, unit="s")
        text = "TIMESTAMP,ContextTokens,GeneratedTokens\n" + "".join(
            f"{s.strftime('%Y-%m-%d %H:%M:%S.%f')}0,{p},{o}\n"
            for s, p, o in zip(stamps, prompts, outputs, strict=True))
    elif format == "mooncake":
        text = "".join(json.dumps({"timestamp": int(t * 1000), "input_length": int(p), "output_length": int(o),
                                   "hash_ids": list(range(int(p) // 512 + 1))}) + "\n"
                       for t, p, o in zip(times, prompts, outputs, strict=True))
    else:
        order = rng.permutation(rows)
        text = "".join(json.dumps({
            "timestamp": str(int(times[i])), "input_length": int(prompts[i]), "output_length": int(outputs[i]),
            "session_id": f"s{i % 5}",
            "hash_ids": {c: rng.integers(0, 99, rng.integers(0, 3)).tolist() for c in COMPONENTS}}) + "\n"
            for i in order)
    path.write_text(text)
    return path


def read_chunked(path: Path, format: str, chunk_rows: int, **options) -> tuple[pd.DataFrame, list[int]]:
    chunks = scan_trace(path, format, chunk_rows, **options)
    assert chunks is not None
    tables = list(chunks)
    assert [len(t) for t in chunks] == [len(t) for t in tables]  # read again, as often as asked
    return pd.concat(tables, ignore_index=True), [len(t) for t in tables]


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.integers(1, 200), chunk_rows=st.integers(1, 250), seed=st.integers(0, 2**16),
       format=st.sampled_from(["azure", "mooncake", "ragpulse"]), ties=st.booleans())
def test_chunked_reading_equals_whole_file_reading(tmp_path, rows, chunk_rows, seed, format, ties):
    path = write_published(tmp_path / f"t.{format}", format, rows, seed, ties)
    whole = load_trace(path, format)
    chunked, sizes = read_chunked(path, format, chunk_rows)
    pd.testing.assert_frame_equal(chunked, whole, check_exact=True)
    assert max(sizes) <= chunk_rows and sum(sizes) == rows


def test_options_apply_to_every_chunk(tmp_path):
    path = write_published(tmp_path / "m.jsonl", "mooncake", 40, 1)
    chunked, _ = read_chunked(path, "mooncake", 7, block_tokens=256)
    pd.testing.assert_frame_equal(chunked, load_trace(path, "mooncake", block_tokens=256), check_exact=True)
    path = write_published(tmp_path / "r.jsonl", "ragpulse", 40, 1)
    chunked, _ = read_chunked(path, "ragpulse", 7, components=["user_input", "sys_prompt"])
    pd.testing.assert_frame_equal(chunked, load_trace(path, "ragpulse", components=["user_input", "sys_prompt"]),
                                  check_exact=True)
    with pytest.raises(TraceError, match="option block_tokens must be a whole number"):
        scan_trace(path, "mooncake", 7, block_tokens=0)
    assert scan_trace(path, "ragpulse", 7, block_tokens=4) is None  # load_trace names the unknown option


def test_ragpulse_equal_times_keep_the_file_order_across_chunks(tmp_path):
    lines = [{"timestamp": str(t), "input_length": i + 1, "output_length": 1} for i, t in enumerate(
        [5, 3, 5, 3, 5, 3, 0, 5])]
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(line) + "\n\n" for line in lines))
    chunked, sizes = read_chunked(path, "ragpulse", 3)
    assert chunked["prompt_tokens"].tolist() == [7, 2, 4, 6, 1, 3, 5, 8]
    assert chunked["arrival_s"].tolist() == [0.0, 3.0, 3.0, 3.0, 5.0, 5.0, 5.0, 5.0]
    assert sizes == [3, 3, 2]


@pytest.mark.parametrize("format, edit, message", [
    ("azure", lambda lines: lines.__setitem__(37, lines[37].replace(",", ",0x", 1)),
     r"row 38, column ContextTokens: expected an integer >= 1, got '0x"),
    ("azure", lambda lines: lines.__setitem__(50, "yesterday,5,5"),
     r"row 51, column TIMESTAMP: expected a date and time, got 'yesterday'"),
    ("azure", lambda lines: lines.__setitem__(30, lines[2]),
     r"row 31, column TIMESTAMP: arrival .* s is earlier than the row before"),
    ("mooncake", lambda lines: lines.__setitem__(44, lines[44].replace('"output_length": ', '"output_length": -')),
     r"row 45, field output_length: expected an integer >= 1"),
    ("mooncake", lambda lines: lines.__setitem__(20, "{not json"), "row 21: not valid JSON"),
    ("mooncake", lambda lines: lines.__setitem__(33, lines[1]), r"row 34, field timestamp: arrival .* is earlier"),
    ("ragpulse", lambda lines: lines.__setitem__(41, lines[41].replace('"timestamp": "', '"timestamp": "noon')),
     r"row 42, field timestamp: expected a number, got 'noon"),
    ("ragpulse", lambda lines: lines.__setitem__(55, lines[55].replace('"input_length": ', '"input_length": -')),
     r"row 56, field input_length: expected an integer >= 1"),
    ("ragpulse", lambda lines: lines.__setitem__(12, json.dumps({"timestamp": "1", "input_length": 2,
                                                                  "output_length": 3})),
     r"row 13, field hash_ids: expected an object of chunk id lists, got nothing"),
])
def test_a_bad_row_in_a_later_chunk_is_named_by_its_file_line(tmp_path, format, edit, message):
    path = write_published(tmp_path / "t", format, 60, 3)
    lines = path.read_text().splitlines()
    edit(lines)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(TraceError) as whole:
        load_trace(path, format)
    with pytest.raises(TraceError, match=message) as chunked:
        scan_trace(path, format, 8)
    assert str(chunked.value) == str(whole.value)


@pytest.mark.parametrize("format", ["azure", "mooncake", "ragpulse"])
def test_missing_and_empty_files_get_the_loaders_message(tmp_path, format):
    with pytest.raises(TraceError, match="no such trace file"):
        scan_trace(tmp_path / "absent", format, 4)
    (tmp_path / "empty").write_text("")
    with pytest.raises(TraceError, match="the file is empty"):
        scan_trace(tmp_path / "empty", format, 4)


@pytest.mark.parametrize("path, format", [
    (sample_path("azure_conv"), "azure"),
    (sample_path("mooncake_conversation"), "mooncake"),
    pytest.param(AZURE_CONV, "azure", marks=needs(AZURE_CONV)),
    pytest.param(MOONCAKE_CONV, "mooncake", marks=needs(MOONCAKE_CONV)),
    pytest.param(RAGPULSE, "ragpulse", marks=needs(RAGPULSE)),
])
def test_the_published_files_read_in_chunks_equal_their_whole_table(path, format):
    chunked, sizes = read_chunked(path, format, 997)
    pd.testing.assert_frame_equal(chunked, load_trace(path, format), check_exact=True)
    assert max(sizes) <= 997

"""Bad rows of a CSV, JSON Lines or Parquet trace read in chunks: found before anything is
simulated, named by file line (a Parquet trace by row number).

The chunk size is made small so that each bad row lies in a later chunk than the first.
"""
from __future__ import annotations

import pandas as pd
import pytest
import yaml

import servesim.traces.chunked as chunked
from tests.bad_inputs.harness import assert_user_error, simrun_in_process, tree

HEADER = "arrival_s,prompt_tokens,output_tokens\n"
GOOD_ROWS = "".join(f"{i / 10!r},8,2\n" for i in range(30))


@pytest.mark.parametrize("tail, fragments", [
    ("3.5,0,2\n", ("row 32", "prompt_tokens", "expected an integer >= 1")),
    ("1.0,8,2\n", ("row 32", "earlier than the row before")),
    ("3.5,8\n", ("row 32", "output_tokens")),
    ("3.5,8,2,9\n", ("not a readable csv file",)),
])
def test_a_bad_row_in_a_later_chunk_fails_the_run_before_it_starts(tmp_path, capsys, monkeypatch, tail, fragments):
    monkeypatch.setattr(chunked, "CHUNK_ROWS", 4)
    (tmp_path / "t.csv").write_text(HEADER + GOOD_ROWS + tail)
    assert_refused_before_running(tmp_path, capsys, "t.csv", "csv", *fragments)


def test_a_bad_json_line_in_a_later_chunk_fails_the_run_before_it_starts(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(chunked, "CHUNK_ROWS", 4)
    trace = tmp_path / "t.jsonl"
    rows = [f'{{"arrival_s": {i / 10!r}, "prompt_tokens": 8, "output_tokens": 2}}' for i in range(30)]
    rows[22] = rows[22].replace("8", "-8")
    trace.write_text("\n".join(rows) + "\n")
    assert_refused_before_running(tmp_path, capsys, "t.jsonl", "jsonl", "row 23", "prompt_tokens")


def assert_refused_before_running(tmp_path, capsys, trace: str, fmt: str, *fragments: str) -> None:
    """`simrun run` on the trace exits 2 with one paragraph naming it and the fragments, writing nothing."""
    out = tmp_path / "out"
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "name": "chunked", "cost_model": {"kind": "constant", "iteration_s": 0.01},
        "workload": {"trace": {"path": trace, "format": fmt}},
        "output": {"dir": str(out), "plots": False},
    }))
    outcome = simrun_in_process(["run", str(config)], capsys)
    assert_user_error(outcome, trace, *fragments)
    assert tree(out) == {}


def test_a_bad_parquet_trace_fails_the_run_before_it_starts(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(chunked, "CHUNK_ROWS", 4)
    table = pd.DataFrame({"arrival_s": [i / 10 for i in range(30)], "prompt_tokens": [8] * 30,
                          "output_tokens": [2] * 30})
    table.loc[25, "prompt_tokens"] = 0
    table.to_parquet(tmp_path / "t.parquet")
    assert_refused_before_running(tmp_path, capsys, "t.parquet", "parquet", "row 26", "prompt_tokens")
    (tmp_path / "t.parquet").write_bytes(b"PAR1 not really")
    assert_refused_before_running(tmp_path, capsys, "t.parquet", "parquet", "not a readable Parquet file")


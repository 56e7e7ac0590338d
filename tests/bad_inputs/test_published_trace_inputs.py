"""Bad rows of Azure, Mooncake and RAGPulse traces read in chunks, and bad synthetic length specs drawn in
chunks: refused before anything is simulated, named as before (a trace row by its file line), nothing written."""
from __future__ import annotations

import json

import pytest
import yaml

import servesim.traces.chunked as chunked
from tests.bad_inputs.harness import assert_user_error, simrun_in_process, tree
from tests.bad_inputs.test_chunked_trace_inputs import assert_refused_before_running

AZURE = "TIMESTAMP,ContextTokens,GeneratedTokens\n" + "".join(
    f"2023-11-16 18:15:{10 + i:02d}.0000000,8,2\n" for i in range(30))


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


MOONCAKE = [{"timestamp": 100 * i, "input_length": 8, "output_length": 2, "hash_ids": [i]} for i in range(30)]
RAGPULSE = [{"timestamp": str(30 - i), "input_length": 8, "output_length": 2, "session_id": "s",
             "hash_ids": {"sys_prompt": [1], "user_input": [i]}} for i in range(30)]


@pytest.mark.parametrize("format, text, fragments", [
    ("azure", AZURE.replace("18:15:35.0000000,8,2", "18:15:35.0000000,0,2"),
     ("row 27", "ContextTokens", "expected an integer >= 1")),
    ("azure", AZURE + "2023-11-16 18:15:00.0000000,8,2\n", ("row 32", "TIMESTAMP", "earlier than the row before")),
    ("azure", AZURE + "soon,8,2\n", ("row 32", "TIMESTAMP", "expected a date and time")),
    ("mooncake", jsonl(MOONCAKE[:25] + [{**MOONCAKE[25], "output_length": 0}] + MOONCAKE[26:]),
     ("row 26", "output_length", "expected an integer >= 1")),
    ("mooncake", jsonl(MOONCAKE) + "{oops\n", ("row 31", "not valid JSON")),
    ("ragpulse", jsonl(RAGPULSE[:21] + [{**RAGPULSE[21], "input_length": "many"}] + RAGPULSE[22:]),
     ("row 22", "input_length", "expected an integer >= 1")),
    ("ragpulse", jsonl(RAGPULSE[:17] + [{**RAGPULSE[17], "hash_ids": {"sys_prompt": 3}}] + RAGPULSE[18:]),
     ("row 18", "hash_ids", "expected sys_prompt to be a list")),
])
def test_a_bad_row_in_a_later_chunk_fails_the_run_before_it_starts(tmp_path, capsys, monkeypatch, format, text,
                                                                   fragments):
    monkeypatch.setattr(chunked, "CHUNK_ROWS", 4)
    (tmp_path / "t.trace").write_text(text)
    assert_refused_before_running(tmp_path, capsys, "t.trace", format, *fragments)


@pytest.mark.parametrize("lengths, fragments", [
    ({"dist": "lognormal", "mean": 500, "sigma": 9}, ("workload.prompt_tokens.sigma", "use at most 4")),
    ({"dist": "uniform", "min": 9, "max": 3}, ("workload.prompt_tokens.max", "below min")),
    ({"dist": "empirical", "path": "missing.csv", "column": "prompt_tokens"}, ("missing.csv", "no such length table")),
])
def test_a_bad_length_spec_of_a_synthetic_workload_is_refused_as_before(tmp_path, capsys, monkeypatch, lengths,
                                                                        fragments):
    monkeypatch.setattr(chunked, "CHUNK_ROWS", 4)
    out = tmp_path / "out"
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "name": "synthetic", "cost_model": {"kind": "constant", "iteration_s": 0.01},
        "workload": {"arrival": {"process": "poisson", "rate": 5.0}, "num_requests": 20,
                     "prompt_tokens": lengths, "output_tokens": {"dist": "fixed", "value": 2}},
        "output": {"dir": str(out), "plots": False},
    }))
    outcome = simrun_in_process(["run", str(config)], capsys)
    assert_user_error(outcome, *fragments)
    assert tree(out) == {}

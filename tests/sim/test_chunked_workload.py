"""A trace read in chunks gives the run exactly the requests the whole table gave, one chunk at a time."""
import itertools
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import servesim.traces.chunked as chunked
from servesim.sim.errors import ConfigError
from servesim.sim.experiment import workload as workload_module
from servesim.sim.experiment.classes import assign_classes
from servesim.sim.experiment.loading import validate_config
from servesim.sim.experiment.workload import build_table, build_workload, request_stream
from servesim.sim.runner import prepare, random_stream, run_extent, simulate
from tests.traces.test_traces_chunked import write_trace

CLASSES = [{"name": "gold", "share": 0.3, "priority": 0}, {"name": "bronze", "share": 0.7, "priority": 2}]


def config_for(path, **workload):
    return validate_config({
        "cost_model": {"kind": "constant", "iteration_s": 0.002},
        "workload": {"trace": {"path": str(path), "format": path.suffix[1:]}, **workload},
        "slo": {"ttft_s": 0.5},
    })


def whole_table(config, tmp_path):
    table = build_table(config.workload, tmp_path, config.seed)
    return assign_classes(table, config.workload, random_stream(config.seed, 3))


@settings(max_examples=20, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunk_rows=st.integers(1, 120), num_requests=st.one_of(st.none(), st.integers(1, 150)),
       start_s=st.sampled_from([0.0, 3.0]), end_s=st.sampled_from([None, 40.0]),
       rate_scale=st.sampled_from([1.0, 2.5]), classes=st.booleans(), format=st.sampled_from(["csv", "jsonl"]))
def test_chunked_workload_equals_the_whole_table(tmp_path, chunk_rows, num_requests, start_s, end_s, rate_scale,
                                                 classes, format):
    path = write_trace(tmp_path / f"t.{format}", 140, 3, optional=not classes)
    extra = {"classes": CLASSES, "class_by": "share"} if classes else {}
    config = config_for(path, num_requests=num_requests, start_s=start_s, end_s=end_s, rate_scale=rate_scale, **extra)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(chunked, "CHUNK_ROWS", chunk_rows)
        workload = build_workload(config.workload, tmp_path, config.seed, 8192, lambda: random_stream(config.seed, 3))
        chunks = list(workload.chunks())
    expected = whole_table(config, tmp_path)
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), expected, check_exact=True)
    assert max(map(len, chunks)) <= chunk_rows
    assert (len(workload), workload.last_arrival_s) == (len(expected), expected["arrival_s"].iloc[-1])
    names = tuple(sorted(set(expected["slo_class"])))
    assert workload.class_names == names
    ids = [r.request_id for r in request_stream(iter(chunks), prepare(config).classes)]
    assert ids == list(range(len(expected)))


@given(sizes=st.lists(st.integers(1, 50), min_size=1, max_size=8), seed=st.integers(0, 2**16))
def test_class_shares_drawn_chunk_by_chunk_equal_one_draw(sizes, seed):
    config = validate_config({"workload": {"arrival": {"process": "poisson", "rate": 1.0}, "num_requests": 10,
                                           "prompt_tokens": {"dist": "fixed", "value": 1},
                                           "output_tokens": {"dist": "fixed", "value": 1},
                                           "classes": CLASSES, "class_by": "share"}})
    table = pd.DataFrame({"arrival_s": np.arange(sum(sizes), dtype=float), "prompt_tokens": 1, "output_tokens": 1})
    whole = assign_classes(table, config.workload, np.random.default_rng(seed))
    rng = np.random.default_rng(seed)
    bounds = np.cumsum([0, *sizes])
    parts = [assign_classes(table.iloc[a:b], config.workload, rng) for a, b in itertools.pairwise(bounds)]
    pd.testing.assert_frame_equal(pd.concat(parts), whole)


def test_a_rule_matching_no_class_names_the_request_by_its_place_in_the_whole_trace(tmp_path, monkeypatch):
    path = tmp_path / "t.csv"
    path.write_text("arrival_s,prompt_tokens,output_tokens\n" + "".join(
        f"{i},{500 if i == 9 else 5},5\n" for i in range(12)))
    config = config_for(path, classes=[{"name": "short", "when": {"max_prompt_tokens": 100}}], class_by="rule")
    monkeypatch.setattr(chunked, "CHUNK_ROWS", 4)
    with pytest.raises(ConfigError, match="request 9 .prompt 500"):
        prepare(config)


def test_an_empty_window_gets_the_whole_table_message(tmp_path, monkeypatch):
    path = write_trace(tmp_path / "t.csv", 30, 4, optional=False)
    monkeypatch.setattr(chunked, "CHUNK_ROWS", 4)
    with pytest.raises(ConfigError, match=r"no request arrives in the window \[1000.0, None\)"):
        prepare(config_for(path, start_s=1000.0))


def test_a_long_csv_trace_runs_without_its_rows_ever_held_whole(tmp_path, monkeypatch):
    """200,000 rows: validated, counted and simulated, never more than one chunk of them read at a time."""
    rows, chunk_rows = 200_000, 8_192
    path = tmp_path / "long.csv"
    arrivals = np.arange(rows) * 1e-3
    path.write_text("arrival_s,prompt_tokens,output_tokens\n" + "".join(f"{a!r},8,1\n" for a in arrivals.tolist()))
    read_sizes: list[int] = []
    real_chunks = chunked.csv_chunks

    def counted(path, size):
        for table in real_chunks(path, size):
            read_sizes.append(len(table))
            yield table

    def whole_file(*args, **kwargs):
        raise AssertionError("the whole trace was loaded")

    monkeypatch.setattr(chunked, "CHUNK_ROWS", chunk_rows)
    monkeypatch.setattr(chunked, "csv_chunks", counted)
    monkeypatch.setattr(workload_module, "load_trace", whole_file)
    monkeypatch.setitem(chunked.FORMATS, "csv", replace(chunked.FORMATS["csv"], load=whole_file))
    prepared = prepare(config_for(path))
    assert run_extent(prepared).num_requests == rows
    assert run_extent(prepared).last_arrival_s == arrivals[-1]
    read_sizes.clear()
    result = simulate(prepared)
    assert result.summary["num_finished"] == rows
    assert max(read_sizes) <= chunk_rows and sum(read_sizes) == rows


def test_a_parquet_trace_runs_as_its_csv_twin(tmp_path):
    table = pd.DataFrame({"arrival_s": [i / 10 for i in range(40)], "prompt_tokens": [64 + i for i in range(40)],
                          "output_tokens": [3] * 40})
    table.to_parquet(tmp_path / "t.parquet")
    table.to_csv(tmp_path / "t.csv", index=False)
    summaries = []
    for name, fmt in (("t.parquet", "parquet"), ("t.csv", "csv")):
        config = validate_config({"cost_model": {"kind": "constant", "iteration_s": 0.01},
                                  "workload": {"trace": {"path": str(tmp_path / name), "format": fmt}}})
        summaries.append(simulate(prepare(config)).summary)
    assert summaries[0]["e2e_s"] == summaries[1]["e2e_s"] and summaries[0]["num_finished"] == 40

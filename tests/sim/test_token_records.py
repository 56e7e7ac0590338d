"""The opt-in per-token file (`output.per_token`, `tokens.parquet`): a row per output token that agrees
with `requests.parquet` and the TBT statistics, the same with and without fast-forward, and
written in row groups as requests finish."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servesim.hwmodels import ConstantCostModel
from servesim.sim.api import run_experiment
from servesim.sim.engine.request import Request, RequestState
from servesim.sim.errors import EngineInvariantError
from servesim.sim.experiment.loading import validate_config
from servesim.sim.reporting import spill
from servesim.sim.reporting.results import write_results
from servesim.sim.reporting.spill import ParquetSpill, typed_frame
from servesim.sim.reporting.token_records import TOKEN_COLUMNS, TOKEN_DTYPES, TokenRecorder
from tests.sim.engine_harness import run_engine
from tests.sim.test_engine_properties import build_requests, requests_with_prefixes
from tests.sim.test_fast_forward_exactness import FAST_FORWARDED, priced_for, scheduler_params

WORKLOAD = {"arrival": {"process": "poisson", "rate": 30.0},
            "prompt_tokens": {"dist": "uniform", "min": 16, "max": 1500},
            "output_tokens": {"dist": "uniform", "min": 1, "max": 120}, "num_requests": 150}


def _config(**overrides) -> dict:
    config = {"seed": 4, "model": "llama-3.1-8b", "hardware": "h100-sxm", "cost_model": {"kind": "roofline"},
              "cluster": {"replicas": 2}, "scheduler": {"name": "vllm", "max_num_seqs": 16},
              "workload": WORKLOAD, "output": {"plots": False, "per_token": True}}
    return {**config, **overrides}


DISAGGREGATED = {"pools": [{"name": "p", "role": "prefill", "replicas": 1},
                           {"name": "d", "role": "decode", "replicas": 2}]}
RUNS = {
    "unified": _config(),
    "disaggregated": _config(cluster=DISAGGREGATED, engine={"api_server": False}),
    "intra-GPU split": _config(engine={"intra_gpu_split": {"name": "proactive"}}),
    "closed loop": _config(
        workload={**{k: v for k, v in WORKLOAD.items() if k != "arrival"},
                  "clients": {"concurrency": 12, "think_time_s": 0.05, "think_time": "exponential"}}),
}


def _tokens(result) -> pd.DataFrame:
    return result.table("tokens")


@pytest.mark.parametrize("name", list(RUNS))
def test_rows_agree_with_the_request_table_and_the_tbt_statistics(name: str) -> None:
    result = run_experiment(validate_config(RUNS[name]))
    tokens, requests = _tokens(result), result.requests.set_index("request_id")
    finished = requests[requests["state"] == "finished"]
    assert len(tokens) == finished["output_tokens"].sum()
    by_request = tokens.groupby("request_id", sort=True)
    assert by_request.ngroups == len(finished)
    # each request's rows are together, in token order from 0
    assert (by_request["token_index"].apply(lambda index: index.tolist() == list(range(len(index))))).all()
    first, last, count = by_request["time_s"].first(), by_request["time_s"].last(), by_request.size()
    assert (count == finished["output_tokens"]).all()
    assert (first == finished["first_token_s"]).all()  # exactly: the TTFT anchor
    assert (last == finished["finish_s"]).all()
    assert (by_request["time_s"].apply(lambda t: t.is_monotonic_increasing)).all()
    gaps = by_request["time_s"].diff().dropna().to_numpy()
    tbt = result.summary["tbt_s"]
    assert gaps.mean() == pytest.approx(tbt["mean"], rel=1e-9)
    assert gaps.max() == pytest.approx(tbt["max"], rel=1e-9)
    max_gap = by_request["time_s"].apply(lambda t: t.diff().max()).dropna()
    np.testing.assert_allclose(max_gap, finished.loc[max_gap.index, "max_tbt_s"], rtol=1e-9)


def test_the_disaggregated_first_token_is_the_landing_not_the_prefill() -> None:
    result = run_experiment(validate_config(RUNS["disaggregated"]))  # no API server: engine times
    transfers = result.table("transfers").set_index("request_id")
    first = _tokens(result).query("token_index == 0").set_index("request_id")["time_s"]
    landed = first.loc[transfers.index]
    assert len(landed) > 0
    assert (landed == transfers["transfer_end_s"]).all()
    assert (landed > transfers["prefill_end_s"]).all()


def test_fast_forward_on_and_off_give_the_same_file() -> None:
    files = []
    for fast_forward in (True, False):
        config = _config(simulation={"fast_forward": fast_forward})
        files.append(_tokens(run_experiment(validate_config(config))).sort_values(["request_id", "token_index"]))
    jumped, stepped = (frame.reset_index(drop=True) for frame in files)
    pd.testing.assert_frame_equal(jumped[["request_id", "token_index"]], stepped[["request_id", "token_index"]])
    np.testing.assert_allclose(jumped["time_s"], stepped["time_s"], rtol=1e-9)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(requests_with_prefixes, st.sampled_from(FAST_FORWARDED), st.integers(4, 60), st.integers(1, 3),
       st.booleans(), st.sampled_from(["recompute", "swap"]), st.integers(1, 6), st.integers(1, 48))
def test_every_token_is_recorded_the_same_with_and_without_fast_forward(
        specs, scheduler, num_blocks, replicas, async_scheduling, preemption, max_seqs, max_tokens):
    runs = [run_engine(build_requests(specs), priced_for(scheduler, ConstantCostModel(0.01, 0.0005)),
                       num_blocks=num_blocks, block_size=2, replicas=replicas, scheduler_name=scheduler,
                       scheduler=scheduler_params(scheduler, max_seqs, max_tokens, False), preemption_name=preemption,
                       host_blocks=10, swap_block_s=0.002, async_scheduling=async_scheduling,
                       fast_forward=fast_forward, record_tokens=True)
            for fast_forward in (False, True)]
    tables = []
    for run in runs:
        assert run.metrics.tokens is not None
        table = pd.read_parquet(run.metrics.tokens.close())
        finished = [r for r in run.requests if r.state is RequestState.FINISHED]
        assert len(table) == sum(r.output_tokens for r in finished)
        ends = table.groupby("request_id")["time_s"].agg(["first", "last"])
        for request in finished:
            assert ends.loc[request.request_id, "first"] == request.first_token_s
            assert ends.loc[request.request_id, "last"] == request.finish_s
        tables.append(table.sort_values(["request_id", "token_index"]).reset_index(drop=True))
    pd.testing.assert_frame_equal(tables[0][["request_id", "token_index"]], tables[1][["request_id", "token_index"]])
    np.testing.assert_allclose(tables[0]["time_s"], tables[1]["time_s"], rtol=1e-9, atol=1e-12)


def test_a_seed_gives_the_same_file_and_the_results_directory_has_it(tmp_path: Path) -> None:
    config = validate_config(_config())
    first, again = run_experiment(config), run_experiment(config)
    pd.testing.assert_frame_equal(_tokens(first), _tokens(again), check_exact=True)
    written = write_results(first, tmp_path / "run", plots=False)
    pd.testing.assert_frame_equal(pd.read_parquet(written / "tokens.parquet"), _tokens(first), check_exact=True)
    assert list(_tokens(first).dtypes.astype(str)) == [TOKEN_DTYPES[c] for c in TOKEN_COLUMNS]


def test_off_by_default_nothing_is_recorded(tmp_path: Path) -> None:
    config = _config()
    config["output"] = {"plots": False}
    result = run_experiment(validate_config(config))
    assert "tokens" not in result.files.tables
    assert not (write_results(result, tmp_path / "run", plots=False) / "tokens.parquet").exists()


def test_rows_are_spilled_in_row_groups_and_memory_follows_the_requests_in_flight(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spill, "ROWS_PER_GROUP", 200)
    seen: list[tuple[int, int]] = []
    ended = TokenRecorder.ended

    def watched(self: TokenRecorder, request: Request) -> None:
        ended(self, request)
        seen.append((self.num_buffered_rows, self.num_in_flight_tokens))

    monkeypatch.setattr(TokenRecorder, "ended", watched)
    config = _config(workload={**WORKLOAD, "num_requests": 400})
    result = run_experiment(validate_config(config))
    max_output = int(result.requests["output_tokens"].max())
    buffered, in_flight = np.array(seen).T
    assert buffered.max() < 200 + max_output  # a row group's worth, plus the request that filled it
    max_running = 2 * 16  # replicas x max_num_seqs
    assert in_flight.max() <= max_running * max_output
    assert pq.ParquetFile(result.files.tables["tokens"]).num_row_groups > 10


def _request(request_id: int, output_tokens: int, state: RequestState = RequestState.FINISHED) -> Request:
    request = Request(request_id, 0.0, 8, output_tokens)
    request.state = state
    return request


def test_the_recorder_joins_steps_and_stretches_and_shifts_by_the_stream_out(tmp_path: Path) -> None:
    recorder = TokenRecorder(tmp_path / "tokens.parquet", stream_out_s=0.5)
    recorder.add(1, 1.0)
    recorder.add(2, 1.0)
    ends = np.array([1.5, 2.0])
    recorder.add_stretch([1, 2], ends)
    ends[:] = 0.0  # the stretch's array may be reused: the recorder kept a copy
    recorder.add(1, 3.0)
    recorder.first_token_moved(2, 1.25)
    recorder.ended(_request(2, 3))
    recorder.ended(_request(1, 4))
    recorder.ended(_request(3, 5, RequestState.REJECTED))  # no tokens: no rows
    table = pd.read_parquet(recorder.close())
    assert table.values.tolist() == [[2, 0, 1.75], [2, 1, 2.0], [2, 2, 2.5],
                                     [1, 0, 1.5], [1, 1, 2.0], [1, 2, 2.5], [1, 3, 3.5]]


def test_a_count_that_disagrees_with_the_request_is_an_engine_error(tmp_path: Path) -> None:
    recorder = TokenRecorder(tmp_path / "tokens.parquet")
    recorder.add(0, 1.0)
    with pytest.raises(EngineInvariantError, match="1 token times recorded for 2 output tokens"):
        recorder.ended(_request(0, 2))


def test_a_request_that_never_ended_is_an_engine_error_at_close(tmp_path: Path) -> None:
    recorder = TokenRecorder(tmp_path / "tokens.parquet")
    recorder.add(7, 1.0)
    with pytest.raises(EngineInvariantError, match="never ended, first request 7"):
        recorder.close()


def test_a_spill_of_blocks_writes_them_in_row_groups_in_order(tmp_path: Path) -> None:
    table = ParquetSpill(tmp_path / "t.parquet", typed_frame(TOKEN_COLUMNS, TOKEN_DTYPES), rows_per_group=5)
    for first in range(0, 12, 3):
        table.append_columns((np.full(3, first), np.arange(3), np.arange(first, first + 3, dtype=float)))
        assert table.num_buffered < 5 + 3
    read = pd.read_parquet(table.close())
    assert read["time_s"].tolist() == list(range(12)) and table.num_rows == 12
    assert pq.ParquetFile(tmp_path / "t.parquet").num_row_groups == 2


def test_an_empty_spill_of_blocks_is_a_typed_empty_table(tmp_path: Path) -> None:
    table = ParquetSpill(tmp_path / "t.parquet", typed_frame(TOKEN_COLUMNS, TOKEN_DTYPES))
    read = pd.read_parquet(table.close())
    assert len(read) == 0 and list(read.dtypes.astype(str)) == [TOKEN_DTYPES[c] for c in TOKEN_COLUMNS]


def test_the_readme_recipe_gives_vllm_itls_per_request(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("### `tokens.parquet`", 1)[1].split("\n### ", 1)[0]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    result = run_experiment(validate_config(_config()))
    directory = write_results(result, tmp_path / "run", plots=False)
    namespace: dict = {"pd": pd}
    exec(compile(code.replace("results/quickstart", str(directory)), "README", "exec"), namespace)
    itls = namespace["itls"]
    finished = result.requests.query("state == 'finished'").set_index("request_id")
    assert itls.index.tolist() == finished.index.tolist()
    assert [len(gaps) for gaps in itls] == (finished["output_tokens"] - 1).tolist()
    assert sum(sum(gaps) for gaps in itls) == pytest.approx((finished["finish_s"] - finished["first_token_s"]).sum())

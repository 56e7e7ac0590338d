"""Memory does not grow with the trace: requests exist only while in flight, rows wait only
for an earlier request to end, and gaps spill as they accumulate."""
from __future__ import annotations

import gc
from pathlib import Path

import pytest

from servesim.sim.engine.replica import RECENTLY_FINISHED
from servesim.sim.engine.request import Request, RequestState
from servesim.sim.errors import EngineInvariantError
from servesim.sim.experiment.classes import ServiceClass
from servesim.sim.experiment.loading import validate_config
from servesim.sim.reporting import gap_store
from servesim.sim.reporting.request_records import RequestRecorder
from servesim.sim.reporting.spill import read_table
from servesim.sim.runner import run_experiment

NUM_REQUESTS = 5000
CLASSES = {"default": ServiceClass("default", 0, None, None, None, None)}


def _live_requests() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is Request)


def test_live_requests_stay_bounded_by_those_in_flight(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gap_store, "SPILL_ENTRIES", 256)
    config = validate_config({
        "cost_model": {"kind": "constant", "iteration_s": 0.01},
        "workload": {"arrival": {"process": "poisson", "rate": 40.0}, "num_requests": NUM_REQUESTS,
                     "prompt_tokens": {"dist": "uniform", "min": 16, "max": 256},
                     "output_tokens": {"dist": "uniform", "min": 1, "max": 16}},
        "output": {"plots": False},
    })
    live: list[int] = []
    before = _live_requests()  # other tests' requests still referenced somewhere (e.g. by hypothesis)

    def sample(num_done: int, now: float) -> None:
        if num_done % 250 == 0:
            live.append(_live_requests() - before)

    result = run_experiment(config, progress=sample)
    in_flight = int(result.system_series["num_in_system"].max())
    # in flight, the one request made ahead (its arrival is the next event), and each replica's
    # window of recently finished requests that policies may look at
    bound = in_flight + 1 + RECENTLY_FINISHED
    assert len(live) == NUM_REQUESTS // 250
    assert max(live) <= bound < NUM_REQUESTS / 2
    assert result.summary["num_finished"] == NUM_REQUESTS


def _request(request_id: int, state: RequestState = RequestState.FINISHED, generated: int = 2) -> Request:
    request = Request(request_id, 0.1 * request_id, 10, 2)
    request.state, request.num_generated = state, generated
    request.first_token_s, request.finish_s = 1.0 + request_id, 2.0 + request_id
    return request


def test_rows_are_written_in_id_order_and_only_overtakers_are_held(tmp_path: Path) -> None:
    recorder = RequestRecorder(tmp_path / "requests.parquet", CLASSES, stream_out_s=0.5)
    for request_id in (2, 1, 3):
        recorder.record(_request(request_id))
    assert (recorder.num_written, recorder.num_held) == (0, 3)
    recorder.record(_request(0))
    assert (recorder.num_written, recorder.num_held) == (4, 0)
    recorder.record(_request(4, RequestState.REJECTED, generated=0))
    table = read_table(recorder.close(5))
    assert table["request_id"].tolist() == [0, 1, 2, 3, 4]
    assert table["first_token_s"].tolist()[:4] == [1.5, 2.5, 3.5, 4.5]  # streamed out to the client
    assert table["finish_s"].iloc[4] == 6.0  # a rejected request's end is not shifted


def test_a_request_that_never_ends_is_an_invariant_error(tmp_path: Path) -> None:
    recorder = RequestRecorder(tmp_path / "requests.parquet", CLASSES)
    recorder.record(_request(0))
    recorder.record(_request(2))
    with pytest.raises(EngineInvariantError, match="1 request.* never finished, first request 1"):
        recorder.close(3)


def test_ending_twice_or_short_of_tokens_is_an_invariant_error(tmp_path: Path) -> None:
    recorder = RequestRecorder(tmp_path / "requests.parquet", CLASSES)
    recorder.record(_request(0))
    with pytest.raises(EngineInvariantError, match="ended twice"):
        recorder.record(_request(0))
    with pytest.raises(EngineInvariantError, match="finished with 1 tokens generated"):
        recorder.record(_request(1, generated=1))

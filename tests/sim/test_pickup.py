"""When the engine takes a request in (`Request.picked_up_s`), and replays counting from it."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.hwmodels import ConstantCostModel
from servesim.sim.validation.real_runs import EngineSettings, RealRun, read_run, write_neutral
from servesim.sim.validation.replay import counted_as_real
from tests.sim.engine_harness import run_engine

STEP = ConstantCostModel(1.0)
"""Every step lasts one second: steps end at 1, 2, 3, ... while the engine is busy."""


@pytest.mark.parametrize("async_scheduling", [False, True])
def test_an_arrival_at_an_idle_engine_is_taken_in_at_once(async_scheduling: bool) -> None:
    run = run_engine([(0.0, 16, 1), (5.5, 16, 1)], STEP, async_scheduling=async_scheduling)
    assert [r.picked_up_s for r in run.requests] == [0.0, 5.5]


@pytest.mark.parametrize(("async_scheduling", "first_token_s"), [(False, 2.0), (True, 3.0)])
def test_an_arrival_during_a_step_is_taken_in_when_the_step_ends(async_scheduling: bool,
                                                                 first_token_s: float) -> None:
    run = run_engine([(0.0, 16, 6), (0.5, 16, 2)], STEP, async_scheduling=async_scheduling)
    late = run.requests[1]
    assert late.picked_up_s == 1.0
    assert late.first_token_s == first_token_s


@pytest.mark.parametrize("progress_observed", [False, True])
def test_a_decode_stretch_takes_an_arrival_in_at_the_end_of_the_step_it_falls_into(progress_observed: bool) -> None:
    stepped = run_engine([(0.0, 16, 20), (5.5, 16, 2)], STEP, async_scheduling=True, fast_forward=False)
    stretched = run_engine([(0.0, 16, 20), (5.5, 16, 2)], STEP, async_scheduling=True,
                           progress_observed=progress_observed)
    assert stepped.requests[1].picked_up_s == stretched.requests[1].picked_up_s == 6.0


def test_an_idle_lockstep_rank_takes_an_arrival_in_at_the_groups_step_boundary() -> None:
    run = run_engine([(0.0, 16, 6), (0.5, 16, 2)], STEP, replicas=2, lockstep=True, async_scheduling=True)
    busy, late = run.requests
    assert (busy.replica_id, late.replica_id) == (0, 1)
    assert late.picked_up_s == busy.first_token_s > 1.0  # the first lockstep step's end (plus the DP sync)


@settings(max_examples=40)
@given(
    gaps=st.lists(st.floats(0.0, 3.0, allow_nan=False), min_size=1, max_size=12),
    async_scheduling=st.booleans(),
    replicas=st.integers(1, 2),
)
def test_pickup_lies_between_arrival_and_admission_within_one_step(gaps: list[float], async_scheduling: bool,
                                                                   replicas: int) -> None:
    arrivals = [sum(gaps[: i + 1]) for i in range(len(gaps))]
    specs = [(t, 16 + 8 * (i % 3), 1 + i % 4) for i, t in enumerate(arrivals)]
    runs = [run_engine(specs, STEP, replicas=replicas, async_scheduling=async_scheduling, fast_forward=ff)
            for ff in (False, True)]
    for request in runs[0].requests:
        assert request.arrival_s <= request.picked_up_s <= request.first_scheduled_s
        assert request.picked_up_s - request.arrival_s <= 1.0 + 1e-9
    assert [r.picked_up_s for r in runs[0].requests] == pytest.approx([r.picked_up_s for r in runs[1].requests])


def _run(latencies_from: str) -> RealRun:
    settings_ = EngineSettings(model="llama-3.1-8b", hardware="l40s", latencies_from=latencies_from)
    return RealRun("sample", settings_, pd.DataFrame())


def test_a_replay_counts_simulated_latencies_from_where_the_real_ones_count() -> None:
    simulated = pd.DataFrame({"arrival_s": [0.0, 0.5, 2.0], "picked_up_s": [0.0, 1.0, math.nan]})
    from_pickup = counted_as_real(simulated, _run("pickup"))
    assert from_pickup["arrival_s"].tolist() == [0.0, 1.0, 2.0]  # a rejected request keeps its arrival
    assert counted_as_real(simulated, _run("arrival")) is simulated
    assert simulated["arrival_s"].tolist() == [0.0, 0.5, 2.0]


def test_vllm_runs_count_from_the_engine_loops_pickup_and_neutral_runs_from_arrival(tmp_path: Path) -> None:
    row = {"input_toks": 100, "output_toks": 3, "queued_ts": 500.0, "first_token_ts": 500.25, "last_token_ts": 500.45}
    vllm_dir, neutral_dir = tmp_path / "vllm", tmp_path / "neutral"
    vllm_dir.mkdir()
    (vllm_dir / "vllm_requests.jsonl").write_text(json.dumps(row) + "\n")
    meta = {"model": "meta-llama/Llama-3.1-8B", "vllm_version": "0.19.0",
            "hardware": {"device_name": "NVIDIA L40S"}, "engine_kwargs": {}}
    (vllm_dir / "vllm_meta.json").write_text(json.dumps(meta))
    run = read_run(vllm_dir)
    assert run.settings.latencies_from == "pickup"
    write_neutral(run, neutral_dir)
    assert read_run(neutral_dir).settings.latencies_from == "pickup"  # kept when shared
    engine = yaml.safe_load((neutral_dir / "engine.yaml").read_text())
    del engine["latencies_from"]
    (neutral_dir / "engine.yaml").write_text(yaml.safe_dump(engine))
    assert read_run(neutral_dir).settings.latencies_from == "arrival"

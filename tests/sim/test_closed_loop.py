"""Closed-loop clients (`workload.clients`) and the steady-state summary block."""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.sim.errors import ConfigError
from servesim.sim.experiment import workload as workload_module
from servesim.sim.experiment.loading import validate_config
from servesim.sim.experiment.workload import think_times
from servesim.sim.reporting.steady_state import steady_state
from servesim.sim.runner import run_experiment


def _config(clients: dict, num_requests: int = 12, **workload) -> dict:
    return {
        "cost_model": {"kind": "constant", "iteration_s": 0.1},
        "workload": {"clients": clients, "prompt_tokens": {"dist": "fixed", "value": 32},
                     "output_tokens": {"dist": "fixed", "value": 4}, "num_requests": num_requests, **workload},
        "output": {"plots": False},
    }


def _finished(table: pd.DataFrame) -> pd.DataFrame:
    return table.sort_values("arrival_s", kind="stable").reset_index(drop=True)


def test_one_client_sends_each_request_when_the_last_comes_back_plus_think_time() -> None:
    result = run_experiment(validate_config(_config({"concurrency": 1, "think_time_s": 0.5})))
    table = _finished(result.requests)
    # one request alone: 4 iterations of 0.1 s (prefill + 3 decodes), then 0.5 s of thinking
    assert table["arrival_s"].tolist() == pytest.approx([0.9 * i for i in range(12)])
    assert table["e2e_s"].tolist() == pytest.approx([0.4] * 12)


@settings(max_examples=15)
@given(st.integers(1, 10), st.floats(0.0, 0.5), st.sampled_from(["fixed", "exponential"]), st.integers(1, 30))
def test_never_more_requests_in_flight_than_clients(concurrency: int, think_s: float, think: str, n: int) -> None:
    config = _config({"concurrency": concurrency, "think_time_s": think_s, "think_time": think}, num_requests=n)
    table = run_experiment(validate_config(config)).requests
    events = sorted([(t, 1) for t in table["arrival_s"]] + [(t, -1) for t in table["finish_s"]],
                    key=lambda e: (e[0], e[1]))
    in_flight = np.cumsum([change for _, change in events])
    assert in_flight.max() == min(concurrency, n)
    assert (table["state"] == "finished").all()
    assert (table.sort_values("arrival_s")["arrival_s"].iloc[: min(concurrency, n)] == 0.0).all()


def test_a_trace_is_sent_row_by_row_in_its_order() -> None:
    config = {
        "cost_model": {"kind": "constant", "iteration_s": 0.05},
        "workload": {"trace": {"sample": "azure_conv", "format": "azure"}, "num_requests": 25,
                     "clients": {"concurrency": 5}},
        "output": {"plots": False},
    }
    result = run_experiment(validate_config(config))
    table = result.requests.sort_values("request_id")
    from servesim.traces import load_trace, sample_path

    trace = load_trace(sample_path("azure_conv"), "azure").head(25)
    assert table["prompt_tokens"].tolist() == trace["prompt_tokens"].tolist()
    assert table["arrival_s"].is_monotonic_increasing and table["arrival_s"].iloc[:5].eq(0.0).all()
    assert table["arrival_s"].iloc[5] == pytest.approx(table["finish_s"].min())


def test_closed_loop_runs_repeat_exactly_for_a_seed_and_differ_across_seeds() -> None:
    config = _config({"concurrency": 4, "think_time_s": 0.3, "think_time": "exponential"}, num_requests=30)
    first = run_experiment(validate_config(config)).requests["arrival_s"]
    again = run_experiment(validate_config(config)).requests["arrival_s"]
    other = run_experiment(validate_config({**config, "seed": 1})).requests["arrival_s"]
    assert first.equals(again) and not first.equals(other)


def test_clients_and_an_arrival_process_are_exclusive() -> None:
    config = _config({"concurrency": 2})
    config["workload"]["arrival"] = {"process": "poisson", "rate": 1.0}
    with pytest.raises(ConfigError, match="remove `arrival`"):
        validate_config(config)


def test_steady_state_window_excludes_warmup_and_drain() -> None:
    table = pd.DataFrame({
        "state": ["finished"] * 5,
        "arrival_s": [0.0, 1.0, 2.0, 3.0, 4.0],
        "finish_s": [0.5, 1.5, 2.5, 3.5, 9.0],
        "output_tokens": [10, 10, 10, 10, 10],
        "ttft_s": [0.1, 0.2, 0.3, 0.4, 0.5],
        "tpot_s": [0.01] * 5,
        "e2e_s": [0.5, 0.5, 0.5, 0.5, 5.0],
    })
    block = steady_state(table, warmup_s=None, warmup_requests=1)
    assert block["window_s"] == [1.0, 4.0]
    assert block["num_requests"] == 4
    assert block["ttft_s"]["mean"] == pytest.approx(0.35)
    assert block["throughput"]["requests_per_s"] == pytest.approx(3 / 3.0)
    later = steady_state(table, warmup_s=2.5, warmup_requests=1)
    assert later["window_s"] == [2.5, 4.0] and later["num_requests"] == 2


def test_summary_has_steady_state_with_warmup_and_with_clients_only() -> None:
    closed = run_experiment(validate_config(_config({"concurrency": 2}, warmup_requests=2)))
    assert closed.summary["steady_state"]["num_requests"] == 10
    open_loop = _config({"concurrency": 2})
    del open_loop["workload"]["clients"]
    open_loop["workload"]["arrival"] = {"process": "constant", "rate": 2.0}
    assert "steady_state" not in run_experiment(validate_config(open_loop)).summary
    open_loop["workload"]["warmup_s"] = 1.0
    assert run_experiment(validate_config(open_loop)).summary["steady_state"]["window_s"][0] == 1.0


@settings(max_examples=60)
@given(st.integers(1, 40), st.integers(0, 300), st.integers(1, 64), st.integers(0, 2**32 - 1))
def test_think_times_drawn_in_chunks_are_the_values_drawn_all_at_once(concurrency: int, n: int, chunk: int,
                                                                      seed: int) -> None:
    clients = {"concurrency": concurrency, "think_time_s": 0.7, "think_time": "exponential"}
    workload = validate_config(_config(clients)).workload
    # before chunking: one draw for every request, the first `concurrency` unused (sent at time 0)
    all_at_once = np.random.default_rng(seed).exponential(0.7, concurrency + n)[concurrency:]
    pauses = think_times(workload, np.random.default_rng(seed), chunk)
    assert list(itertools.islice(pauses, n)) == all_at_once.tolist()


def test_fixed_think_times_are_the_same_pause_for_every_request() -> None:
    workload = validate_config(_config({"concurrency": 3, "think_time_s": 0.25})).workload
    assert list(itertools.islice(think_times(workload, np.random.default_rng(0)), 5)) == [0.25] * 5


def test_a_closed_loop_run_is_the_same_whatever_the_think_time_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    config = validate_config(_config({"concurrency": 3, "think_time_s": 0.2, "think_time": "exponential"},
                                     num_requests=40))
    default = run_experiment(config).requests
    monkeypatch.setattr(workload_module, "THINK_TIME_CHUNK", 4)  # 10 chunks over the run
    pd.testing.assert_frame_equal(run_experiment(config).requests, default, check_exact=True)

"""`simulation.workers`: a run split among processes gives the single process's results.

Most tests run the workers' bodies one after another in this process (the merge and the share
logic are what they check); one test and the CLI's (`tests/bad_inputs/test_workers_inputs.py`)
spawn real worker processes.

Compared exactly: requests.parquet, iterations.parquet, every summary figure except the wall
time and the pooled mean gap between tokens (its sum runs in another order: equal to the last
bits), and the token gaps as a multiset. The time series are compared in the order the merge
defines (replica series by time then replica; system series one row per time).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servesim.policies import create_policy
from servesim.policies.registry import policy_names
from servesim.sim.experiment.loading import validate_config
from servesim.sim.parallel import run as parallel_run
from servesim.sim.parallel import workers as parallel_workers
from servesim.sim.parallel.independence import coupling_reasons
from servesim.sim.parallel.run import SerialRunWarning, workers_to_use
from servesim.sim.reporting.results import RunResult
from servesim.sim.runner import prepare, simulate


def config(workers: int | str = 1, replicas: int = 3, **sections: Any) -> Any:
    data: dict[str, Any] = {
        "name": "parallel", "model": "llama-3.1-8b", "hardware": "h100-sxm", "cost_model": {"kind": "roofline"},
        "cluster": {"replicas": replicas},
        "workload": {"arrival": {"process": "poisson", "rate": 40.0},
                     "prompt_tokens": {"dist": "lognormal", "mean": 700, "sigma": 0.8, "max": 4096},
                     "output_tokens": {"dist": "uniform", "min": 1, "max": 200}, "num_requests": 300},
        "output": {"plots": False, "iterations": True},
    }
    for key, value in sections.items():  # a section's keys replace the base's; a key set to None is removed
        merged = {**data[key], **value} if isinstance(data.get(key), dict) else value
        data[key] = {k: v for k, v in merged.items() if v is not None} if isinstance(merged, dict) else merged
    data["simulation"] = {**data.get("simulation", {}), "workers": workers}
    return validate_config(data, origin="test_parallel_run")


def in_process_workers(tasks: Any, route: Any, progress: Any) -> list[Any]:
    """The workers' bodies run one after another in this process (the spawned path is tested apart)."""
    destinations = route()
    return [parallel_workers.simulate_prepared_share(task, lambda: destinations, None) for task in tasks]


def normalised_replica_series(result: RunResult) -> pd.DataFrame:
    """A single process's rows at one time on several replicas are in event order; sort them by replica."""
    series = result.replica_series.reset_index()
    return (series.sort_values(["time_s", "replica", "index"], kind="stable")
            .drop(columns="index").reset_index(drop=True))


def normalised_system_series(result: RunResult) -> pd.DataFrame:
    """The count after the last change at each time."""
    return result.system_series.groupby("time_s", sort=False).tail(1).reset_index(drop=True)


def sorted_gaps(result: RunResult) -> np.ndarray:
    values, weights = result.token_gaps
    pairs = np.stack([values, weights], axis=1)
    return pairs[np.lexsort((weights, values))]


def without_run_dependent(summary: dict[str, Any]) -> dict[str, Any]:
    copy = {**summary, "run": {k: v for k, v in summary["run"].items() if k != "wall_s"},
            "tbt_s": {k: v for k, v in summary["tbt_s"].items() if k != "mean"}}
    return copy


def assert_same_results(serial: RunResult, parallel: RunResult) -> None:
    pd.testing.assert_frame_equal(serial.requests, parallel.requests, check_exact=True)
    assert without_run_dependent(serial.summary) == without_run_dependent(parallel.summary)
    serial_mean, parallel_mean = serial.summary["tbt_s"]["mean"], parallel.summary["tbt_s"]["mean"]
    assert (serial_mean is None and parallel_mean is None) or math.isclose(serial_mean, parallel_mean, rel_tol=1e-12)
    np.testing.assert_array_equal(sorted_gaps(serial), sorted_gaps(parallel))
    if serial.iterations is not None:
        pd.testing.assert_frame_equal(serial.iterations, parallel.iterations, check_exact=True)
    pd.testing.assert_frame_equal(normalised_replica_series(serial), parallel.replica_series, check_exact=True)
    pd.testing.assert_frame_equal(normalised_system_series(serial), parallel.system_series, check_exact=True)


CASES = {
    "vllm": {},
    "sarathi-constant-cost": {"scheduler": {"name": "sarathi"},
                              "cost_model": {"kind": "constant", "iteration_s": 0.02, "per_token_s": 1e-5}},
    "prefix-caching": {"cache": {"prefix_caching": True},
                       "workload": {"shared_prefix": {"num_groups": 3, "tokens": 256, "share": 0.7}}},
    "preemption-swap": {"memory": {"num_kv_blocks": 160}, "preemption": {"name": "swap"},
                        "scheduler": {"name": "vllm", "max_num_seqs": 32}},
    "timeouts-and-classes": {
        "scheduler": {"name": "priority"},
        "workload": {"arrival": {"process": "gamma", "rate": 80.0, "cv": 3.0},
                     "classes": [{"name": "chat", "share": 0.6, "priority": 0, "timeout_s": 0.3},
                                 {"name": "batch", "share": 0.4, "priority": 1}]}},
    "no-fast-forward-no-api": {"simulation": {"fast_forward": False}, "engine": {"api_server": False}},
}


@pytest.mark.parametrize("case", list(CASES))
def test_two_workers_give_the_single_process_results(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel_run, "run_workers", in_process_workers)
    serial = simulate(prepare(config(1, **CASES[case])))
    parallel = simulate(prepare(config(2, **CASES[case])))
    assert_same_results(serial, parallel)
    assert serial.summary["run"]["config_hash"] == parallel.summary["run"]["config_hash"]


@settings(max_examples=12, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(replicas=st.integers(2, 5), workers=st.integers(2, 4), seed=st.integers(0, 2**16),
       rate=st.floats(5.0, 200.0), scheduler=st.sampled_from(["vllm", "sarathi", "sjf", "orca"]),
       caching=st.booleans(), blocks=st.sampled_from([None, 120]), constant=st.booleans(),
       num_requests=st.integers(1, 120))
def test_any_split_of_independent_replicas_gives_the_single_process_results(
        monkeypatch: pytest.MonkeyPatch, replicas: int, workers: int, seed: int, rate: float, scheduler: str,
        caching: bool, blocks: int | None, constant: bool, num_requests: int) -> None:
    monkeypatch.setattr(parallel_run, "run_workers", in_process_workers)
    sections: dict[str, Any] = {
        "seed": seed, "scheduler": {"name": scheduler}, "cache": {"prefix_caching": caching},
        "workload": {"arrival": {"process": "poisson", "rate": rate}, "num_requests": num_requests,
                     **({"shared_prefix": {"num_groups": 2, "tokens": 128}} if caching else {})},
    }
    if blocks is not None:
        sections["memory"] = {"num_kv_blocks": blocks}
    if constant:
        sections["cost_model"] = {"kind": "constant", "iteration_s": 0.01}
    serial = simulate(prepare(config(1, replicas, **sections)))
    parallel = simulate(prepare(config(workers, replicas, **sections)))
    assert_same_results(serial, parallel)


def test_worker_processes_give_the_single_process_results_and_sum_their_progress() -> None:
    calls: list[tuple[int, float]] = []
    sections = CASES["prefix-caching"]
    parallel = simulate(prepare(config(2, **sections)), lambda done, now: calls.append((done, now)))
    assert_same_results(simulate(prepare(config(1, **sections))), parallel)
    assert calls[-1] == (300, parallel.summary["sim_time_s"])
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


def test_only_round_robin_routes_without_reading_the_replicas() -> None:
    independent = [name for name in policy_names("router") if not create_policy("router", name, {}).depends_on_replicas]
    assert independent == ["round_robin"]


@pytest.mark.parametrize(("sections", "key"), [
    ({"cluster": {"replicas": 3, "router": {"name": "least_outstanding"}}}, "cluster.router"),
    ({"workload": {"clients": {"concurrency": 4}, "arrival": None}}, "workload.clients"),
    ({"cluster": {"replicas": 3, "parallel": {"ep_across_replicas": True}}}, "ep_across_replicas"),
    ({"engine": {"intra_gpu_split": {"name": "static"}}}, "engine.intra_gpu_split"),
    ({"model": "mixtral-8x7b", "cluster": {"replicas": 3, "parallel": {"tp": 2}}}, "MoE"),
    ({"cost_model": {"kind": "table"}}, "cost tables"),
    ({"cluster": {"replicas": 1}}, "1 replica"),
    ({"output": {"per_token": True}}, "output.per_token"),
    ({"cluster": {"replicas": 3, "topology": {"host": {"gbps": 8}}}}, "cluster.topology"),
    ({"cluster": {"replicas": None, "pools": [{"name": "a", "replicas": 2}, {"name": "b", "replicas": 1}]}},
     "cluster.pools"),
])
def test_each_coupling_is_named_and_keeps_the_run_in_one_process(sections: dict[str, Any], key: str) -> None:
    prepared = prepare(config(2, **sections))
    reasons = coupling_reasons(prepared)
    assert any(key in reason for reason in reasons), reasons
    with pytest.warns(SerialRunWarning, match=key):
        assert workers_to_use(prepared) == 1


def test_independent_replicas_get_the_workers_asked_for_at_most_one_per_replica() -> None:
    assert coupling_reasons(prepare(config(2))) == []
    assert workers_to_use(prepare(config(2))) == 2
    assert workers_to_use(prepare(config(8))) == 3
    assert workers_to_use(prepare(config(1))) == 1


def test_auto_falls_back_to_one_process_silently(recwarn: pytest.WarningsRecorder) -> None:
    prepared = prepare(config("auto", cluster={"replicas": 3, "router": {"name": "least_kv"}}))
    assert workers_to_use(prepared) == 1
    assert not [w for w in recwarn if issubclass(w.category, SerialRunWarning)]


def test_a_workers_error_is_raised_in_the_parent(tmp_path: Any) -> None:
    prepared = prepare(config(2))
    task = parallel_workers.ShareTask(0, prepared.config, prepared.base_dir, (0,), tmp_path / "missing", False)
    with pytest.raises(FileNotFoundError):
        parallel_workers.run_workers([task], lambda: np.zeros(len(prepared.workload), dtype=np.int64), None)


def test_a_worker_that_dies_without_a_word_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    import queue

    class Ended:
        exitcode = -9

        def is_alive(self) -> bool:
            return False

    monkeypatch.setattr(parallel_workers, "POLL_S", 0.01)
    with pytest.raises(parallel_workers.EngineInvariantError, match=r"worker process 0 .*exit code -9"):
        parallel_workers._last_words(queue.Queue(), [Ended()], {})

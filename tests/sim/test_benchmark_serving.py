"""`benchmark_serving.json`: vLLM's serving-benchmark result keys, units and definitions."""
import json
import math

import numpy as np
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from servesim.sim import load_config, run_experiment
from servesim.sim.cli import main
from servesim.sim.reporting.benchmark_serving import (
    FILE_NAME,
    benchmark_serving_result,
    max_concurrent,
    metric_statistics,
)

# The keys `vllm bench serve --save-result --save-detailed --percentile-metrics ttft,tpot,itl,e2el
# --metric-percentiles 50,90,99` writes (vllm-project/vllm, vllm/benchmarks/serve.py, commit
# 009e6d4a1cd6: `main_async`'s result_json, `benchmark`'s result dict and `process_one_metric`).
VLLM_SETUP_KEYS = [
    "date", "endpoint_type", "backend", "label", "model_id", "tokenizer_id", "num_prompts",
    "request_rate", "burstiness", "max_concurrency",
]
VLLM_RESULT_KEYS = [
    "duration", "completed", "failed", "total_input_tokens", "total_output_tokens", "request_throughput",
    "request_goodput", "output_throughput", "total_token_throughput", "input_lens", "output_lens", "ttfts",
    "itls", "latencies", "start_times", "queue_times", "generated_texts", "errors", "max_output_tokens_per_s",
    "max_concurrent_requests", "rtfx",
]
VLLM_METRIC_KEYS = [
    f"{stat}_{metric}_ms"
    for metric in ("ttft", "tpot", "itl", "e2el")
    for stat in ("mean", "median", "std", "p50", "p90", "p99")
]
# What servesim adds the way `--metadata KEY=VALUE` would.
METADATA_KEYS = {"servesim_version", "hardware", "cost_model"}

# One request per second, each alone on the replica: a 10-token prompt is one 10 ms iteration,
# then two 10 ms decode iterations.
ISOLATED = {
    "name": "isolated",
    "cost_model": {"kind": "constant", "iteration_s": 0.01},
    "workload": {"arrival": {"process": "constant", "rate": 1.0}, "prompt_tokens": {"dist": "fixed", "value": 10},
                 "output_tokens": {"dist": "fixed", "value": 3}, "num_requests": 5},
    "slo": {"ttft_s": 1.0},
    "output": {"plots": False},
}


def result_of(data: dict, **overrides) -> dict:
    run = run_experiment(load_config(data, overrides=overrides))
    return benchmark_serving_result(run.config, run.summary, run.requests, run.gaps)


def test_the_keys_are_vllms_plus_metadata():
    keys = list(result_of(ISOLATED))
    assert set(keys) - METADATA_KEYS == set(VLLM_SETUP_KEYS + VLLM_RESULT_KEYS + VLLM_METRIC_KEYS)
    assert len(keys) == len(set(keys))


def test_isolated_requests_give_the_closed_form_figures_in_milliseconds():
    result = result_of(ISOLATED)
    for metric, expected in (("ttft", 10.0), ("tpot", 10.0), ("itl", 10.0), ("e2el", 30.0)):
        for stat in ("mean", "median", "p50", "p90", "p99"):
            assert result[f"{stat}_{metric}_ms"] == pytest.approx(expected, abs=1e-6), (stat, metric)
        assert result[f"std_{metric}_ms"] == pytest.approx(0.0, abs=1e-6)
    assert result["completed"] == 5 and result["failed"] == 0
    assert result["total_input_tokens"] == 50 and result["total_output_tokens"] == 15
    assert result["ttfts"] == pytest.approx([0.01] * 5) and result["latencies"] == pytest.approx([0.03] * 5)
    assert result["input_lens"] == [10] * 5 and result["output_lens"] == [3] * 5
    assert result["errors"] == [""] * 5
    assert result["max_concurrent_requests"] == 1
    assert result["request_rate"] == 1.0 and result["burstiness"] == "inf"
    duration = result["duration"]
    assert duration == pytest.approx(4.03)
    assert result["request_throughput"] == pytest.approx(5 / duration)
    assert result["output_throughput"] == pytest.approx(15 / duration)
    assert result["total_token_throughput"] == pytest.approx(65 / duration)
    assert result["request_goodput"] == pytest.approx(5 / duration)


def test_figures_agree_with_the_request_table_and_the_summary():
    run = run_experiment(load_config({
        "workload": {"arrival": {"process": "gamma", "rate": 8.0, "cv": 2.0},
                     "prompt_tokens": {"dist": "uniform", "min": 50, "max": 900},
                     "output_tokens": {"dist": "uniform", "min": 1, "max": 80}, "num_requests": 120},
        "output": {"plots": False},
    }))
    result = benchmark_serving_result(run.config, run.summary, run.requests, run.gaps)
    finished = run.requests[run.requests["state"] == "finished"]
    assert result["ttfts"] == run.requests["ttft_s"].tolist()
    assert result["mean_e2el_ms"] == pytest.approx(finished["e2e_s"].mean() * 1000)
    # TPOT leaves out single-token outputs, as vLLM's does; ITL is every token gap, pooled.
    assert result["median_tpot_ms"] == pytest.approx(np.median(finished["tpot_s"].dropna()) * 1000)
    assert result["mean_itl_ms"] == pytest.approx(run.summary["tbt_s"]["mean"] * 1000)
    assert result["burstiness"] == pytest.approx(0.25)
    assert result["request_goodput"] is None  # no objectives, as vLLM without --goodput
    assert result["request_throughput"] == pytest.approx(run.summary["throughput"]["requests_per_s"])


def test_failed_requests_are_counted_listed_with_zeros_and_left_out_of_statistics():
    data = {**ISOLATED, "workload": {**ISOLATED["workload"], "prompt_tokens": {"dist": "uniform", "min": 5, "max": 40},
                                       "num_requests": 40},
            "memory": {"max_model_len": 20}}
    run = run_experiment(load_config(data))
    result = benchmark_serving_result(run.config, run.summary, run.requests, run.gaps)
    rejected = (run.requests["state"] == "rejected").to_numpy()
    assert 0 < rejected.sum() < 40
    assert result["failed"] == rejected.sum() and result["completed"] == 40 - rejected.sum()
    for i in np.flatnonzero(rejected):
        assert result["output_lens"][i] == 0 and result["ttfts"][i] == 0.0
        assert result["errors"][i].startswith("rejected: ")
    assert result["mean_ttft_ms"] == pytest.approx(10.0, abs=1e-6)
    assert result["total_input_tokens"] == run.requests.loc[~rejected, "prompt_tokens"].sum()


def test_a_run_where_nothing_finishes_is_strict_json_with_nulls(tmp_path):
    data = {**ISOLATED, "memory": {"max_model_len": 5}}
    run = run_experiment(load_config(data))
    result = benchmark_serving_result(run.config, run.summary, run.requests, run.gaps)
    assert result["completed"] == 0 and result["mean_ttft_ms"] is None and result["p99_itl_ms"] is None
    assert result["request_throughput"] is None
    json.dumps(result, allow_nan=False)


@pytest.mark.parametrize("values", [[0.004], [0.001, 0.002, 0.01, 0.5], list(np.linspace(0.0, 1.0, 101))])
def test_statistics_are_numpys_defaults_in_milliseconds(values):
    stats = metric_statistics("ttft", np.array(values))
    assert stats["mean_ttft_ms"] == pytest.approx(np.mean(values) * 1000)
    assert stats["std_ttft_ms"] == pytest.approx(np.std(values) * 1000)
    assert stats["median_ttft_ms"] == pytest.approx(np.median(values) * 1000)
    assert stats["p90_ttft_ms"] == pytest.approx(np.percentile(values, 90) * 1000)


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(1, 20)), min_size=1, max_size=40))
def test_max_concurrent_counts_overlapping_half_open_intervals(intervals):
    starts = np.array([float(s) for s, _ in intervals])
    ends = np.array([float(s + d) for s, d in intervals])
    brute = max(int(((starts <= t) & (t < ends)).sum()) for t in starts)
    assert max_concurrent(starts, ends) == brute


def test_every_results_directory_has_one_and_identical_runs_write_identical_files(tmp_path, capsys):
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump({**ISOLATED, "variants": {"a": {"seed": 1}, "b": {"seed": 2}}}))
    assert main(["run", str(config), "-o", str(tmp_path / "variants")]) == 0
    for name in ("a", "b"):
        assert json.loads((tmp_path / "variants" / name / FILE_NAME).read_text())["completed"] == 5
    single = tmp_path / "single.yaml"
    single.write_text(yaml.safe_dump(ISOLATED))
    texts = []
    for out in ("first", "second"):
        assert main(["run", str(single), "-o", str(tmp_path / out)]) == 0
        texts.append((tmp_path / out / FILE_NAME).read_text())
    assert texts[0] == texts[1]
    assert "NaN" not in texts[0] and "Infinity" not in texts[0]
    assert not math.isnan(json.loads(texts[0])["mean_ttft_ms"])

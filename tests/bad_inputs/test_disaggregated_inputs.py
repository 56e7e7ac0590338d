"""Disaggregated configs that could never serve are refused before simulating (issue 10, item 9):
exit 2, one paragraph naming the pool and its key, nothing written. The cases `test_pool_inputs`
and `test_topology_inputs` already cover (missing roles, zero replicas in a decode pool, links of
zero bandwidth, a decode pool short of blocks for the longest prompt) are not repeated here."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from servesim.sim.api import run_experiment
from servesim.sim.experiment.loading import validate_config
from tests.bad_inputs.harness import assert_run_refused

PREFILL = {"name": "pre", "role": "prefill", "replicas": 1}
DECODE = {"name": "dec", "role": "decode", "replicas": 1}
WORKLOAD = {
    "arrival": {"process": "poisson", "rate": 5.0},
    "prompt_tokens": {"dist": "uniform", "min": 500, "max": 1500},
    "output_tokens": {"dist": "fixed", "value": 8},
    "num_requests": 5,
}


def _config(pools: list[dict[str, Any]], model: str = "llama-3.1-8b") -> dict[str, Any]:
    return {"name": "bad_disaggregation", "model": model, "cost_model": {"kind": "roofline"},
            "cluster": {"pools": pools}, "workload": WORKLOAD}


def test_a_prefill_pool_without_replicas_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert_run_refused(tmp_path, capsys, _config([{**PREFILL, "replicas": 0}, DECODE]),
                       ("cluster.pools[pre].replicas", "at least one replica"))


def test_a_decode_pool_whose_plan_does_not_fit_the_model_names_that_pool(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The prefill pool's TP4 holds a 70B model; the decode pool's single H100 does not."""
    config = _config([{**PREFILL, "parallel": {"tp": 4}}, DECODE], model="llama-3.1-70b")
    assert_run_refused(tmp_path, capsys, config, ("cluster.pools[dec]", "does not fit", "tp=1"))


def test_a_pool_whose_memory_share_cannot_hold_the_weights_names_its_memory_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config([PREFILL, {**DECODE, "memory": {"gpu_memory_utilization": 0.1}}])
    assert_run_refused(tmp_path, capsys, config, ("cluster.pools[dec].memory", "does not fit",
                                                  "cluster.pools[dec].memory.gpu_memory_utilization"))


def test_a_decode_pool_with_a_shorter_max_model_len_than_requests_the_prefill_pool_takes_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Prompts of 500-1,500 tokens: a decode pool limited to 1,024 could never admit the longer ones."""
    config = _config([PREFILL, {**DECODE, "memory": {"max_model_len": 1024}}])
    assert_run_refused(tmp_path, capsys, config,
                       ("cluster.pools[dec].memory.max_model_len", "1,024", "cluster.pools[pre]", "request(s)"))


def test_a_shorter_decode_max_model_len_that_no_request_reaches_is_accepted() -> None:
    config = _config([PREFILL, {**DECODE, "memory": {"max_model_len": 2048}}])
    result = run_experiment(validate_config(config))
    assert (result.requests["state"] == "finished").all()


def test_a_prefill_pool_with_the_shorter_max_model_len_rejects_the_longer_requests_at_arrival() -> None:
    """The other way round nothing is prefilled in vain: the prefill replica rejects them, with a reason."""
    config = _config([{**PREFILL, "memory": {"max_model_len": 1024}}, DECODE])
    requests = run_experiment(validate_config(config)).requests
    longer = requests["prompt_tokens"] + requests["output_tokens"] > 1024
    assert longer.any() and (~longer).any()
    assert (requests.loc[longer, "state"] == "rejected").all()
    assert requests.loc[longer, "reject_reason"].str.contains("max_model_len 1024").all()
    assert (requests.loc[~longer, "state"] == "finished").all()

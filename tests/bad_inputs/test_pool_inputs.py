"""Bad cluster pools are refused before simulating: exit 2, one paragraph naming the pool and key, nothing written."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.bad_inputs.harness import assert_run_refused

PREFILL = {"name": "pre", "role": "prefill", "replicas": 1}
DECODE = {"name": "dec", "role": "decode", "replicas": 1}
WORKLOAD = {
    "arrival": {"process": "poisson", "rate": 5.0},
    "prompt_tokens": {"dist": "fixed", "value": 512},
    "output_tokens": {"dist": "fixed", "value": 8},
    "num_requests": 5,
}


def _config(cluster: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"name": "bad_pools", "model": "llama-3.1-8b", "cost_model": {"kind": "roofline"}, "cluster": cluster,
            "workload": WORKLOAD, **top}


def _refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], config: dict[str, Any], *fragments: str) -> None:
    assert_run_refused(tmp_path, capsys, config, fragments)


@pytest.mark.parametrize("cluster, fragments", [
    ({"pools": [PREFILL]}, ("cluster.pools[pre].role", "no pool has role decode")),
    ({"pools": [DECODE, {"name": "u", "role": "unified"}]}, ("cluster.pools[dec].role", "no pool has role prefill")),
    ({"pools": [PREFILL, {**DECODE, "replicas": 0}]}, ("cluster.pools[dec].replicas", "at least one replica")),
    ({"pools": [PREFILL, {**DECODE, "name": "pre"}]}, ("cluster.pools", "unique", "pre")),
    ({"pools": []}, ("cluster.pools", "empty")),
    ({"replicas": 2, "pools": [PREFILL, DECODE]}, ("cluster.pools replaces cluster.replicas",)),
    ({"pools": [PREFILL, {**DECODE, "memory": {"block_size": 0}}]}, ("cluster.pools[dec].memory.block_size",)),
    ({"pools": [PREFILL, {**DECODE, "memory": {"block_sise": 32}}]}, ("cluster.pools[dec].memory.block_sise",)),
    ({"pools": [PREFILL, {**DECODE, "scheduler": {"name": "vllm", "max_num_seqs": 0}}]},
     ("cluster.pools[dec].scheduler", "max_num_seqs")),
    ({"pools": [PREFILL, DECODE], "transfer": {"name": "teleport"}}, ("cluster.transfer", "teleport")),
    ({"pools": [PREFILL, DECODE], "topology": {"inter_node": {"gbps": 0}}}, ("cluster.topology.inter_node.gbps",)),
    ({"pools": [PREFILL, {**DECODE, "parallel": {"tp": 4}}], "topology": {"devices_per_node": 2}},
     ("cluster.pools[dec]", "devices_per_node")),
])
def test_a_malformed_pool_list_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          cluster: dict[str, Any], fragments: tuple[str, ...]) -> None:
    _refused(tmp_path, capsys, _config(cluster), *fragments)


def test_a_pool_whose_plan_does_not_fit_the_model_names_the_pool(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    cluster = {"pools": [PREFILL, {**DECODE, "hardware": "l4"}]}
    _refused(tmp_path, capsys, _config(cluster, model="llama-3.1-70b"), "cluster.pools[pre]", "does not fit")


def test_a_pool_plan_the_model_cannot_split_names_the_pools_parallel_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cluster = {"pools": [PREFILL, {**DECODE, "parallel": {"tp": 3}}]}
    _refused(tmp_path, capsys, _config(cluster), "cluster.pools[dec].parallel.tp", "does not divide")


def test_a_decode_pool_that_can_never_admit_the_longest_prompt_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cluster = {"pools": [PREFILL, {**DECODE, "memory": {"num_kv_blocks": 32}}]}  # 512 tokens: 513 do not fit
    _refused(tmp_path, capsys, _config(cluster), "cluster.pools[dec]", "longest prompt", "512")


def test_an_unknown_pool_hardware_names_the_pools_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cluster = {"pools": [PREFILL, {**DECODE, "hardware": "h900"}]}
    _refused(tmp_path, capsys, _config(cluster), "cluster.pools[dec].hardware", "h900")

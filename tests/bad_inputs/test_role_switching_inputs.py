"""Bad `cluster.role_switching` settings are refused before simulating: exit 2, one paragraph, nothing written."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.bad_inputs.harness import assert_user_error, simrun_in_process, tree

POOLS = [{"name": "pre", "role": "prefill", "replicas": 1}, {"name": "dec", "role": "decode", "replicas": 1}]
WORKLOAD = {
    "arrival": {"process": "poisson", "rate": 5.0},
    "prompt_tokens": {"dist": "fixed", "value": 512},
    "output_tokens": {"dist": "fixed", "value": 8},
    "num_requests": 5,
}


@pytest.mark.parametrize("cluster, fragments", [
    ({"replicas": 2, "role_switching": {}}, ("cluster.role_switching", "prefill and a decode pool")),
    ({"pools": [{"name": "u", "role": "unified"}], "role_switching": {}}, ("cluster.role_switching",)),
    ({"pools": POOLS, "role_switching": {"policy": "random"}}, ("cluster.role_switching.policy", "queue_pressure")),
    ({"pools": POOLS, "role_switching": {"interval_s": 0}}, ("cluster.role_switching.interval_s",)),
    ({"pools": POOLS, "role_switching": {"switch_s": -1}}, ("cluster.role_switching.switch_s",)),
    ({"pools": POOLS, "role_switching": {"kv_high": 1.5}}, ("cluster.role_switching.kv_high",)),
    ({"pools": POOLS, "role_switching": {"interval": 1}}, ("cluster.role_switching.interval",)),
])
def test_bad_role_switching_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], cluster: dict[str, Any],
                                       fragments: tuple[str, ...]) -> None:
    config = {"name": "bad_roles", "model": "llama-3.1-8b", "cost_model": {"kind": "roofline"}, "cluster": cluster,
              "workload": WORKLOAD}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(config))
    before = tree(tmp_path)
    outcome = simrun_in_process(["run", str(tmp_path / "exp.yaml"), "-o", str(tmp_path / "out")], capsys)
    assert_user_error(outcome)
    for fragment in fragments:
        assert fragment.lower() in outcome.stderr.lower(), (fragment, outcome.stderr)
    assert tree(tmp_path) == before


def test_a_prefill_pool_that_could_not_decode_the_longest_prompt_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With dynamic roles a prefill instance may become a decode one: its KV must hold the longest prompt."""
    pools = [{"name": "pre", "role": "prefill", "replicas": 2, "memory": {"num_kv_blocks": 8}},
             {"name": "dec", "role": "decode", "replicas": 2}]
    config = {"name": "bad_roles", "model": "llama-3.1-8b", "cost_model": {"kind": "roofline"},
              "cluster": {"pools": pools, "role_switching": {}}, "workload": WORKLOAD}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(config))
    outcome = simrun_in_process(["run", str(tmp_path / "exp.yaml"), "-o", str(tmp_path / "out")], capsys)
    assert_user_error(outcome)
    for fragment in ("cluster.pools[pre]", "could never be admitted", "a prefill instance may become a decode one"):
        assert fragment in outcome.stderr, outcome.stderr

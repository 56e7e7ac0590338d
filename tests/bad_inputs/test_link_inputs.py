"""A bad box link (config or a real run's engine.yaml): exit 2, one paragraph naming the key, nothing written."""
import shutil
from pathlib import Path

import pytest
import yaml

from tests.bad_inputs.harness import assert_user_error, simrun_in_process, tree
from tests.bad_inputs.test_cost_table_selection import BASE

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "real_run_sample"


@pytest.mark.parametrize("cost_model, key", [
    ({"kind": "table", "link_gbps": 0}, "cost_model.link_gbps"),
    ({"kind": "roofline", "link_latency_us": -1}, "cost_model.link_latency_us"),
])
def test_a_bad_link_in_a_config_exits_2(tmp_path, capsys, cost_model, key):
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump({**BASE, "cost_model": cost_model}))
    before = tree(tmp_path)
    outcome = simrun_in_process(["run", str(tmp_path / "exp.yaml"), "-o", str(tmp_path / "out")], capsys)
    assert_user_error(outcome)
    assert key in outcome.stderr, outcome.stderr
    assert tree(tmp_path) == before


def test_a_bad_link_in_a_real_runs_engine_yaml_exits_2(tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(SAMPLE, run_dir)
    engine = yaml.safe_load((run_dir / "engine.yaml").read_text())
    (run_dir / "engine.yaml").write_text(yaml.safe_dump({**engine, "link_gbps": -16}))
    before = tree(tmp_path)
    outcome = simrun_in_process(["validate-real", str(run_dir), "-o", str(tmp_path / "out"),
                                 "--hardware", "l40s"], capsys)
    assert_user_error(outcome, "engine.yaml", "link_gbps")
    assert tree(tmp_path) == before


@pytest.mark.parametrize("cluster, fragment", [
    ([1, 2], "must be a JSON object"),
    ({"link_bw": 0}, "`link_bw` must be a positive number"),
    ({"link_bw": 16, "link_latency": "fast"}, "`link_latency` must be a positive number"),
])
def test_a_bad_link_in_config_json_names_the_file_and_key(tmp_path, capsys, cluster, fragment):
    import json

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    row = {"input_toks": 100, "output_toks": 3, "queued_ts": 500.0, "first_token_ts": 500.25, "last_token_ts": 500.45}
    (run_dir / "vllm_requests.jsonl").write_text(json.dumps(row) + "\n")
    meta = {"model": "Qwen/Qwen3-32B", "engine_kwargs": {"tensor_parallel_size": 2},
            "hardware": {"device_name": "RTXPRO6000"}}
    (run_dir / "vllm_meta.json").write_text(json.dumps(meta))
    (run_dir / "config.json").write_text(json.dumps(cluster))
    before = tree(tmp_path)
    outcome = simrun_in_process(["validate-real", str(run_dir), "-o", str(tmp_path / "out")], capsys)
    assert_user_error(outcome, "config.json", fragment)
    assert tree(tmp_path) == before

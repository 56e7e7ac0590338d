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

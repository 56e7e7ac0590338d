"""Bad choices of shipped cost tables: exit 2, one paragraph naming the key and the fix, nothing written."""
import pytest
import yaml

from tests.bad_inputs.harness import assert_user_error, simrun_in_process, tree

BASE = {
    "name": "tables",
    "model": "llama-3.1-8b",
    "hardware": "h100-sxm",
    "workload": {"arrival": {"process": "poisson", "rate": 2.0}, "num_requests": 5,
                 "prompt_tokens": {"dist": "fixed", "value": 100}, "output_tokens": {"dist": "fixed", "value": 5}},
    "output": {"plots": False},
}


@pytest.mark.parametrize("cost_model, fragments", [
    ({"kind": "table", "source": "nvidia"}, ["cost_model.source", "aiconfigurator"]),
    ({"kind": "table", "moe_distribution": "zipf"}, ["cost_model.moe_distribution", "balanced"]),
    ({"kind": "table", "source": "vidur", "tables": "mine"}, ["cost_model.tables", "not both"]),
    ({"kind": "table", "source": "profiled"}, ["no shipped cost tables from source 'profiled'", "h100-sxm"]),
])
def test_bad_table_choices_exit_2(tmp_path, capsys, cost_model, fragments):
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump({**BASE, "cost_model": cost_model}))
    before = tree(tmp_path)
    outcome = simrun_in_process(["run", str(tmp_path / "exp.yaml"), "-o", str(tmp_path / "out")], capsys)
    assert_user_error(outcome)
    for fragment in fragments:  # a config-validation paragraph lists its problems on the lines below
        assert fragment in outcome.stderr, (fragment, outcome.stderr)
    assert tree(tmp_path) == before


@pytest.mark.parametrize("model, parallel",
                         [("llama-3.1-8b", {"tp": 2, "ep": 2}), ("qwen3-30b-a3b", {"tp": 2, "ep": 4})])
def test_expert_parallelism_needs_a_moe_model_and_divides_tp(tmp_path, capsys, model, parallel):
    config = {**BASE, "model": model, "cluster": {"parallel": parallel}}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(config))
    outcome = simrun_in_process(["run", str(tmp_path / "exp.yaml"), "-o", str(tmp_path / "out")], capsys)
    assert_user_error(outcome, "cluster.parallel.ep", "ep must divide tp")
    assert not (tmp_path / "out").exists()

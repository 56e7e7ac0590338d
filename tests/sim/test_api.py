"""The Python API of `servesim.sim`: load, run (twice in one process), write, and a notebook's flow."""
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

import servesim.sim
from servesim.sim import load_config, run_experiment, run_variants, write_results
from servesim.sim.errors import ConfigError
from servesim.sim.experiment.config import ExperimentConfig

SMALL = {
    "name": "api",
    "cost_model": {"kind": "constant", "iteration_s": 0.01},
    "workload": {"arrival": {"rate": 20.0}, "prompt_tokens": {"dist": "uniform", "min": 10, "max": 200},
                 "output_tokens": {"dist": "uniform", "min": 1, "max": 30}, "num_requests": 60},
    "output": {"plots": False},
}


def without_wall_time(summary: dict) -> dict:
    run = {k: v for k, v in summary["run"].items() if k != "wall_s"}
    return {**summary, "run": run}


def test_load_config_reads_files_dicts_and_configs_with_either_kind_of_override(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(SMALL))
    from_file = load_config(path, overrides=["scheduler.max_num_seqs=8", "seed=3"])
    from_dict = load_config(SMALL, overrides={"scheduler.max_num_seqs": 8, "seed": 3})
    scheduler = {"name": "vllm", "max_num_seqs": 8}
    from_config = load_config(load_config(SMALL), overrides={"scheduler": scheduler, "seed": 3})
    assert isinstance(from_file, ExperimentConfig)
    assert from_file == from_dict == from_config
    assert from_file.scheduler.params()["max_num_seqs"] == 8 and from_file.seed == 3
    same = load_config(from_file)
    assert same is from_file


def test_bad_configs_raise_one_error_naming_every_problem():
    with pytest.raises(ConfigError) as info:
        load_config(SMALL, overrides={"schedulr.name": "vllm", "memory.block_size": 0})
    assert "schedulr: unknown key" in str(info.value) and "memory.block_size" in str(info.value)


def test_running_twice_in_one_process_gives_the_same_results():
    first, second = run_experiment(SMALL), run_experiment(SMALL)
    assert isinstance(first.requests, pd.DataFrame) and len(first.requests) == 60
    assert without_wall_time(first.summary) == without_wall_time(second.summary)
    pd.testing.assert_frame_equal(first.requests, second.requests)
    pd.testing.assert_frame_equal(first.replica_series, second.replica_series)
    pd.testing.assert_frame_equal(first.system_series, second.system_series)
    changed = run_experiment(SMALL, overrides={"seed": 1})
    assert not changed.requests["arrival_s"].equals(first.requests["arrival_s"])


def test_relative_paths_are_relative_to_the_config_file(tmp_path, monkeypatch):
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "trace.csv").write_text("arrival_s,prompt_tokens,output_tokens\n0.0,20,4\n0.5,30,2\n")
    data = {**SMALL, "workload": {"trace": {"path": "trace.csv", "format": "csv"}}}
    (folder / "exp.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.chdir(tmp_path)
    assert run_experiment(folder / "exp.yaml").summary["num_finished"] == 2
    assert run_experiment(load_config(folder / "exp.yaml"), base_dir=folder).summary["num_finished"] == 2
    with pytest.raises(ConfigError, match="trace.csv"):
        run_experiment(load_config(folder / "exp.yaml"))


def test_variants_run_with_run_variants_and_results_are_written(tmp_path):
    data = {**SMALL, "variants": {"small_batches": {"scheduler": {"name": "vllm", "max_num_seqs": 2}},
                                  "default": {}}}
    with pytest.raises(ConfigError, match="run_variants"):
        run_experiment(data)
    results = run_variants(data)
    assert list(results) == ["small_batches", "default"]
    assert results["small_batches"].summary["ttft_s"]["mean"] > results["default"].summary["ttft_s"]["mean"]
    out = write_results(results["default"], tmp_path / "default", plots=False)
    assert {"summary.json", "requests.parquet", "benchmark_serving.json"} <= {p.name for p in out.iterdir()}


def test_importing_the_package_does_not_load_the_simulator():
    code = ("import sys, servesim.sim; assert 'pandas' not in sys.modules and 'simpy' not in sys.modules; "
            "servesim.sim.run_experiment; assert 'simpy' in sys.modules; print(servesim.sim.__version__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == servesim.sim.__version__
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        servesim.sim.nothing  # noqa: B018


NOTEBOOK_CELL = '''
from servesim.policies import register
from servesim.policies.schedulers.budget import BudgetScheduler

@register("scheduler", "notebook_fcfs")
class NotebookFcfsSchedulerPolicy(BudgetScheduler):
    """FCFS, defined in a notebook cell."""
'''


def test_a_notebook_can_rerun_the_cell_that_registers_a_policy(isolated_registry):
    namespace: dict = {"__name__": "__main__"}
    for _ in range(2):
        exec(compile(NOTEBOOK_CELL, "<cell>", "exec"), namespace)
        result = run_experiment(SMALL, overrides={"scheduler.name": "notebook_fcfs"})
        assert result.summary["num_finished"] == 60


@pytest.fixture
def isolated_registry(monkeypatch):
    from servesim.policies import registry

    registry.all_policies()
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def test_the_readme_example_runs(tmp_path, monkeypatch):
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Python API", 1)[1].split("\n## ", 1)[0]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    namespace: dict = {"display": lambda value: None}
    exec(compile(code.replace("results/quickstart-api", str(tmp_path / "out")), "README", "exec"), namespace)
    assert (tmp_path / "out" / "benchmark_serving.json").is_file()

"""`simrun plan`, `simrun validate` of a plan, and the Python API's `plan()`."""
import pandas as pd
import yaml

from servesim import sim
from tests.bad_inputs.harness import simrun_in_process
from tests.plan.configs import tiny_plan

PLAN = {"gpus": 2, "tp": [1, 2], "modes": ["unified"], "max_rate": 200}


def write(tmp_path, data):
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_simrun_plan_prints_the_table_and_the_best_and_writes_the_directory(tmp_path, capsys):
    path = write(tmp_path, tiny_plan(PLAN))
    outcome = simrun_in_process(["plan", str(path), "-o", str(tmp_path / "out"), "--jobs", "1"], capsys)
    assert outcome.code == 0, outcome.stderr
    lines = outcome.stdout.splitlines()
    assert lines[0] == "placement search on 2 GPUs, SLO attainment target 90%: 3 candidates (0 from an earlier run)"
    assert "candidate shape  GPUs  goodput req/s    per GPU" in lines[1]
    assert sum(line.startswith("* ") for line in lines) == 1
    best = pd.read_parquet(tmp_path / "out" / "plan.parquet").query("best").iloc[0]
    assert f"best: {best['candidate']} {best['label']} on {best['gpus']} GPUs" in outcome.stdout
    assert "plan: [3/3]" in outcome.stderr  # progress lines over candidates when not on a terminal


def test_a_rerun_says_how_many_candidates_it_reused(tmp_path, capsys):
    path = write(tmp_path, tiny_plan(PLAN))
    args = ["plan", str(path), "-o", str(tmp_path / "out"), "--jobs", "1", "--quiet"]
    simrun_in_process(args, capsys)
    outcome = simrun_in_process(args, capsys)
    assert outcome.code == 0 and "3 candidates (3 from an earlier run)" in outcome.stdout
    assert outcome.stderr == ""


def test_set_overrides_reach_the_plan_block(tmp_path, capsys):
    path = write(tmp_path, tiny_plan(PLAN))
    outcome = simrun_in_process(["plan", str(path), "-o", str(tmp_path / "out"), "--jobs", "1", "--quiet",
                                 "--set", "plan.tp=[1]"], capsys)
    assert outcome.code == 0 and "2 candidates" in outcome.stdout


def test_validate_checks_every_candidate_of_a_plan(tmp_path, capsys):
    path = write(tmp_path, tiny_plan({"gpus": 4, "tp": [1, 4], "modes": ["unified"]}, model="llama-3.1-70b"))
    outcome = simrun_in_process(["validate", str(path)], capsys)
    assert outcome.code == 0, outcome.stderr
    assert "a plan of 5 candidates, 1 can run, 4 skipped" in outcome.stdout


def test_the_python_api_runs_a_plan_like_the_cli(tmp_path):
    report = sim.plan(tiny_plan(PLAN), tmp_path / "out", tmp_path, jobs=1, overrides={"plan.tp": [2]})
    assert list(report.table["label"]) == ["unified 1 x tp2"]
    assert report.best is not None and report.best["label"] == "unified 1 x tp2"
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "out" / "plan.parquet"), report.table)


def test_progress_counts_candidates():
    from servesim.sim.sweeps.progress import PointsExtent

    extent = PointsExtent(12, 2, "candidate")
    assert extent.describe(5, 0.0) == "5/12 candidates done"
    assert extent.rate(4, 10.0).endswith(" a candidate")

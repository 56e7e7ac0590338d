"""`simulation.workers` and `simrun run --workers`: bad values are refused before anything runs; a
run whose replicas interact is run in one process with a note that says why."""
from __future__ import annotations

import pandas as pd
import pytest
import yaml

from tests.bad_inputs.harness import assert_run_refused, assert_user_error, simrun_in_process, tree

BASE = {
    "name": "workers",
    "cost_model": {"kind": "constant", "iteration_s": 0.01},
    "cluster": {"replicas": 2},
    "workload": {"arrival": {"rate": 50.0}, "prompt_tokens": {"dist": "fixed", "value": 32},
                 "output_tokens": {"dist": "fixed", "value": 4}, "num_requests": 40},
    "output": {"plots": False},
}


@pytest.mark.parametrize("value", ["0", "-3", "many", "1.5"])
def test_a_bad_workers_flag_is_refused(tmp_path, capsys, value):
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(BASE))
    before = tree(tmp_path)
    outcome = simrun_in_process(["run", str(tmp_path / "exp.yaml"), "-o", str(tmp_path / "out"),
                                 f"--workers={value}"], capsys)
    assert_user_error(outcome)
    assert "simulation.workers" in outcome.stderr
    assert tree(tmp_path) == before


def test_a_bad_workers_key_is_refused(tmp_path, capsys):
    assert_run_refused(tmp_path, capsys, {**BASE, "simulation": {"workers": 0}},
                       ["simulation.workers", "at least 1, or `auto`"])


def test_interacting_replicas_run_in_one_process_and_say_why_once(tmp_path, capsys):
    config = {**BASE, "cluster": {"replicas": 2, "router": {"name": "least_outstanding"}}}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(config))
    outcome = simrun_in_process(["run", str(tmp_path / "exp.yaml"), "-o", str(tmp_path / "out"), "--workers", "2",
                                 "-q"], capsys)
    assert outcome.code == 0, outcome.stderr
    notes = [line for line in outcome.stderr.splitlines() if "simulation.workers" in line]
    assert len(notes) == 1 and "least_outstanding" in notes[0], outcome.stderr


def test_workers_flag_writes_the_single_process_results(tmp_path, capsys):
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(BASE))
    for name, extra in (("one", []), ("two", ["--workers", "2"])):
        outcome = simrun_in_process(["run", str(tmp_path / "exp.yaml"), "-o", str(tmp_path / name), "-q", *extra],
                                    capsys)
        assert outcome.code == 0, outcome.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "one" / "requests.parquet"),
                                  pd.read_parquet(tmp_path / "two" / "requests.parquet"), check_exact=True)

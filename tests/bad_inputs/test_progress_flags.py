"""A bad --progress-interval is refused before any work, on every command that shows progress."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.bad_inputs.harness import assert_user_error, simrun_in_process, tree

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "real_run_sample"
CONFIG = {"name": "p", "workload": {"num_requests": 5}, "slo": {"ttft_s": 1.0}, "output": {"plots": False}}


def command(name: str, tmp_path: Path) -> list[str]:
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    out = str(tmp_path / "out")
    return {"run": ["run", str(config), "-o", out],
            "goodput": ["goodput", str(config)],
            "validate-real": ["validate-real", str(SAMPLE), "--hardware", "l40s", "-o", out],
            "fidelity": ["fidelity", str(config), "-o", out]}[name]


@pytest.mark.parametrize("name", ["run", "goodput", "validate-real", "fidelity"])
@pytest.mark.parametrize("interval", ["0", "-2.5", "nan", "inf"])
def test_a_progress_interval_that_is_not_a_positive_number_is_refused(tmp_path, capsys, name, interval):
    outcome = simrun_in_process([*command(name, tmp_path), "--progress-interval", interval], capsys)
    assert_user_error(outcome, "--progress-interval", "> 0", "--progress-interval 30", f"got {float(interval)}")
    assert outcome.stdout == ""
    assert tree(tmp_path / "out") == {}

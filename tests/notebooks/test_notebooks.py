"""The analysis notebooks run top to bottom on results directories written by real runs."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from servesim.sim.cli import main
from tests.notebooks.harness import NOTEBOOKS, execute_notebook, outputs

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "real_run_sample"
TWO_CLASSES = {
    "name": "nb",
    "cluster": {"replicas": 2},
    "workload": {"arrival": {"rate": 8.0}, "prompt_tokens": {"dist": "fixed", "value": 300},
                 "output_tokens": {"dist": "uniform", "min": 5, "max": 40}, "num_requests": 60,
                 "classes": [{"name": "chat", "share": 0.5, "slo": {"ttft_s": 0.2}},
                             {"name": "batch", "share": 0.5}]},
    "slo": {"tpot_s": 0.05},
    "output": {"plots": False},
}


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_committed_notebooks_carry_no_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)
    assert "parameters" in code[0].metadata.get("tags", []), "the first code cell holds the parameters"


def test_run_analysis_reads_one_run(tmp_path, capsys) -> None:
    config = tmp_path / "nb.json"  # JSON is YAML
    config.write_text(json.dumps(TWO_CLASSES))
    assert main(["run", str(config), "-o", str(tmp_path / "run"), "--quiet"]) == 0
    capsys.readouterr()
    executed = execute_notebook(NOTEBOOKS / "run_analysis.ipynb", {"SERVESIM_RESULTS": tmp_path / "run"})
    printed = "".join(outputs(executed, "stream"))
    assert "60 requests: 60 finished" in printed
    tables = "".join(outputs(executed, "text/plain"))
    assert "chat" in tables and "batch" in tables and "mean KV use" in tables
    assert len(outputs(executed, "image/png")) == 3  # CDFs, latency over the run, the replicas' state


def test_fidelity_report_reads_a_validate_real_directory(tmp_path, capsys) -> None:
    assert main(["validate-real", str(SAMPLE), "--hardware", "l40s", "-o", str(tmp_path / "vr"), "--quiet"]) == 0
    capsys.readouterr()
    executed = execute_notebook(NOTEBOOKS / "fidelity_report.ipynb", {"SERVESIM_RESULTS": tmp_path / "vr"})
    printed = "".join(outputs(executed, "stream"))
    assert "24 real requests, 24 simulated" in printed
    assert "figures within their targets" in printed
    assert "no per-request comparison" not in printed
    assert len(outputs(executed, "image/png")) == 3  # CDFs, request by request, errors against targets


def test_run_analysis_reads_a_run_where_every_request_was_rejected(tmp_path, capsys) -> None:
    too_long = {"name": "rejected", "memory": {"max_model_len": 1000}, "output": {"plots": False},
                "workload": {"arrival": {"rate": 5.0}, "prompt_tokens": {"dist": "fixed", "value": 2000},
                             "output_tokens": {"dist": "fixed", "value": 10}, "num_requests": 10}}
    config = tmp_path / "rejected.json"
    config.write_text(json.dumps(too_long))
    assert main(["run", str(config), "-o", str(tmp_path / "run"), "--quiet"]) == 0
    capsys.readouterr()
    executed = execute_notebook(NOTEBOOKS / "run_analysis.ipynb", {"SERVESIM_RESULTS": tmp_path / "run"})
    assert "10 requests: 0 finished, 10 rejected" in "".join(outputs(executed, "stream"))

"""Notebooks 2 and 3 run top to bottom (nbclient, a real kernel) on tiny sweeps made here; a failing cell fails."""
import json
import os
from pathlib import Path

import nbformat
import pandas as pd
from nbclient import NotebookClient

from servesim.sim.sweeps.run import run_sweep
from tests.sweep.configs import tiny_config

ROOT = Path(__file__).resolve().parents[2]


def execute(name: str, results: Path, monkeypatch) -> str:
    """Run the notebook with SERVESIM_RESULTS pointing at `results`; its printed and displayed text."""
    monkeypatch.setenv("SERVESIM_RESULTS", str(results))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    NotebookClient(notebook, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    texts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            texts.append(output.get("text", "") + output.get("data", {}).get("text/plain", ""))
    return "\n".join(texts)


def test_committed_notebooks_have_no_stored_outputs():
    for name in ("policy_comparison.ipynb", "capacity_planning.ipynb"):
        cells = json.loads((ROOT / "notebooks" / name).read_text())["cells"]
        assert all(not c.get("outputs") and c.get("execution_count") is None for c in cells if c["cell_type"] == "code")


def test_policy_comparison_notebook(tmp_path, monkeypatch):
    variants = {"prefill_first": {"scheduler": {"name": "vllm", "prefill_first": True, "chunked_prefill": False}},
                "sarathi": {"scheduler": {"name": "sarathi", "max_num_batched_tokens": 256}}}
    config = tiny_config({"variants": variants, "seeds": [0, 1, 2]},
                         cost_model={"kind": "constant", "iteration_s": 0.005, "per_token_s": 0.0001},
                         workload={"arrival": {"rate": 20.0}, "num_requests": 40,
                                   "prompt_tokens": {"dist": "uniform", "min": 100, "max": 900},
                                   "output_tokens": {"dist": "fixed", "value": 16}})
    table = run_sweep(config, tmp_path, tmp_path / "sweep", jobs=1).table
    text = execute("policy_comparison.ipynb", tmp_path / "sweep", monkeypatch)
    assert "6 points, 6 ok, 0 failed; compared by variant over 3 seeds" in text
    means = table.groupby("variant")["tbt_s.p99"].mean()
    assert means["sarathi"] < means["prefill_first"]  # no tie: the notebook must find the lower one
    best = means.idxmin()
    assert any(line.startswith("tbt_s.p99") and best in line for line in text.splitlines())


def test_capacity_planning_notebook(tmp_path, monkeypatch):
    config = tiny_config({"grid": {"workload.rate_scale": [1, 8], "cluster.replicas": [1, 2, 4]}},
                         workload={"trace": {"sample": "azure_conv", "format": "azure"}, "num_requests": 80},
                         cost_model={"kind": "constant", "iteration_s": 0.02, "per_token_s": 0.0001},
                         slo={"ttft_s": 0.3, "tpot_s": 0.1})
    table = run_sweep(config, tmp_path, tmp_path / "sweep", jobs=1).table
    text = execute("capacity_planning.ipynb", tmp_path / "sweep", monkeypatch)
    meets = table[(table["ttft_s.p99"] <= 0.3) & (table["tpot_s.p99"] <= 0.1)]
    needed = meets.groupby("workload.rate_scale")["cluster.replicas"].min().reindex([1, 8])
    assert not needed.equals(pd.Series([1, 1], index=[1, 8])), "the tiny sweep should need more replicas at 8x"
    for scale, replicas in needed.items():
        shown = "NaN" if pd.isna(replicas) else f"{replicas:g}"
        assert any(line.split()[:1] == [str(scale)] and line.split()[-1] == shown for line in text.splitlines()), (
            scale, shown, text)
    assert os.environ.get("SERVESIM_RESULTS") == str(tmp_path / "sweep")

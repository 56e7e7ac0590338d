"""Notebooks 2 and 3 run top to bottom (nbclient, a real kernel) on tiny sweeps made here; a failing cell fails."""
from pathlib import Path

import pandas as pd

from servesim.sim.sweeps.run import run_sweep
from tests.notebooks.harness import NOTEBOOKS, execute_notebook, outputs
from tests.sweep.configs import tiny_config


def execute(name: str, results: Path) -> str:
    """Run the notebook on the sweep in `results`; its printed and displayed text."""
    notebook = execute_notebook(NOTEBOOKS / name, {"SERVESIM_RESULTS": results})
    return "\n".join(outputs(notebook, "stream") + outputs(notebook, "text/plain"))


def test_policy_comparison_notebook(tmp_path):
    variants = {"prefill_first": {"scheduler": {"name": "vllm", "prefill_first": True, "chunked_prefill": False}},
                "sarathi": {"scheduler": {"name": "sarathi", "max_num_batched_tokens": 256}}}
    config = tiny_config({"variants": variants, "seeds": [0, 1, 2]},
                         cost_model={"kind": "constant", "iteration_s": 0.005, "per_token_s": 0.0001},
                         workload={"arrival": {"rate": 20.0}, "num_requests": 40,
                                   "prompt_tokens": {"dist": "uniform", "min": 100, "max": 900},
                                   "output_tokens": {"dist": "fixed", "value": 16}})
    table = run_sweep(config, tmp_path, tmp_path / "sweep", jobs=1).table
    text = execute("policy_comparison.ipynb", tmp_path / "sweep")
    assert "6 points, 6 ok, 0 failed; compared by variant over 3 seeds" in text
    means = table.groupby("variant")["tbt_s.p99"].mean()
    assert means["sarathi"] < means["prefill_first"]  # no tie: the notebook must find the lower one
    best = means.idxmin()
    assert any(line.startswith("tbt_s.p99") and best in line for line in text.splitlines())


def test_capacity_planning_notebook(tmp_path):
    config = tiny_config({"grid": {"workload.rate_scale": [1, 8], "cluster.replicas": [1, 2, 4]}},
                         workload={"trace": {"sample": "azure_conv", "format": "azure"}, "num_requests": 80},
                         cost_model={"kind": "constant", "iteration_s": 0.02, "per_token_s": 0.0001},
                         slo={"ttft_s": 0.3, "tpot_s": 0.1})
    table = run_sweep(config, tmp_path, tmp_path / "sweep", jobs=1).table
    text = execute("capacity_planning.ipynb", tmp_path / "sweep")
    meets = table[(table["ttft_s.p99"] <= 0.3) & (table["tpot_s.p99"] <= 0.1)]
    needed = meets.groupby("workload.rate_scale")["cluster.replicas"].min().reindex([1, 8])
    assert not needed.equals(pd.Series([1, 1], index=[1, 8])), "the tiny sweep should need more replicas at 8x"
    for scale, replicas in needed.items():
        shown = "NaN" if pd.isna(replicas) else f"{replicas:g}"
        assert any(line.split()[:1] == [str(scale)] and line.split()[-1] == shown for line in text.splitlines()), (
            scale, shown, text)

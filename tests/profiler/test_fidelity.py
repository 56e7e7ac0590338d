"""`simrun fidelity` on the tiny CPU model: it completes and its report is complete and sane.

Times are never asserted (the machine may be busy); only structure and consistency.
"""
import json

import pandas as pd
import pytest
import yaml

pytest.importorskip("torch")

from servesim.sim.cli import main  # noqa: E402

CONFIG = {
    "name": "fidelity_test",
    "model": "tiny-llama",
    "hardware": "cpu",
    "cost_model": {"kind": "table"},
    "scheduler": {"name": "vllm", "max_num_seqs": 8, "max_num_batched_tokens": 64},
    "memory": {"num_kv_blocks": 256},
    "workload": {
        "arrival": {"process": "poisson", "rate": 40.0},
        "prompt_tokens": {"dist": "uniform", "min": 8, "max": 100},
        "output_tokens": {"dist": "uniform", "min": 2, "max": 12},
        "num_requests": 6,
    },
    "output": {"plots": False},
}


def test_fidelity_run_writes_a_complete_report(tmp_path, capsys):
    config = tmp_path / "fidelity.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    out = tmp_path / "report"
    assert main(["fidelity", str(config), "-o", str(out), "--quick", "--no-progress"]) == 0
    stdout = capsys.readouterr().out
    assert "per-iteration" in stdout and "TTFT" in stdout
    assert {"report.json", "iterations.parquet", "engine_requests.parquet", "sim_requests.parquet", "fidelity.png",
            "tables"} <= {p.name for p in out.iterdir()}
    report = json.loads((out / "report.json").read_text())
    assert report["num_requests"] == report["num_finished_engine"] == report["num_finished_sim"] == 6
    assert report["cost_model"]["kind"] == "table" and report["cost_model"]["roofline_operators"] == []
    errors = report["iteration_error"]
    assert errors["num_iterations"] == report["iterations_engine"] > 0
    assert 0 <= errors["median"] <= errors["p90"]
    for name in ("ttft_s", "tbt_s", "e2e_s"):
        for p in ("p50", "p90", "p99"):
            cell = report["latency"][name][p]
            assert cell["measured"] > 0 and cell["simulated"] > 0
            assert cell["relative_error"] == pytest.approx((cell["simulated"] - cell["measured"]) / cell["measured"])
    iterations = pd.read_parquet(out / "iterations.parquet")
    assert len(iterations) == errors["num_iterations"]
    assert (iterations["measured_s"] > 0).all() and (iterations["predicted_s"] > 0).all()
    assert iterations["num_tokens"].sum() == sum(pd.read_parquet(out / "engine_requests.parquet").eval(
        "prompt_tokens + output_tokens - 1"))


def test_fidelity_refuses_a_plan_the_engine_cannot_run(tmp_path, capsys):
    config = tmp_path / "fidelity.yaml"
    config.write_text(yaml.safe_dump({**CONFIG, "cluster": {"replicas": 2}}))
    assert main(["fidelity", str(config), "-o", str(tmp_path / "r")]) == 2
    assert "one replica on one device" in capsys.readouterr().err

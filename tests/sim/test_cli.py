"""`simrun` end to end: runs, validation, listing, and what users see on bad input."""
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from servesim.sim.cli import main

ROOT = Path(__file__).resolve().parents[2]

SMALL = {
    "name": "small",
    "model": "llama-3.1-8b",
    "hardware": "h100-sxm",
    "workload": {
        "arrival": {"process": "poisson", "rate": 5.0},
        "prompt_tokens": {"dist": "lognormal", "mean": 400, "sigma": 0.5, "max": 2000},
        "output_tokens": {"dist": "uniform", "min": 5, "max": 60},
        "num_requests": 80,
    },
    "slo": {"ttft_s": 0.5, "tpot_s": 0.05},
    "output": {"plots": False},
}


def write_config(tmp_path: Path, data: dict, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_run_writes_the_results_directory(tmp_path, capsys):
    out = tmp_path / "res"
    code, stdout, _ = run_cli(["run", str(write_config(tmp_path, SMALL)), "-o", str(out), "--set", "output.plots=true"],
                              capsys)
    assert code == 0
    assert "TTFT" in stdout and "results:" in stdout
    names = {p.name for p in out.iterdir()}
    assert {"config.yaml", "summary.json", "requests.parquet", "replica_series.parquet", "system_series.parquet",
            "latency_cdf.png", "over_time.png"} <= names
    summary = json.loads((out / "summary.json").read_text())
    for key in ("num_requests", "num_finished", "num_rejected", "num_preemptions", "sim_time_s"):
        assert key in summary
    for block in ("ttft_s", "tbt_s", "tpot_s", "e2e_s", "queue_s"):
        assert set(summary[block]) == {"mean", "p50", "p90", "p99", "max"}
    assert set(summary["throughput"]) >= {"requests_per_s", "input_tokens_per_s", "output_tokens_per_s"}
    assert set(summary["slo"]) >= {"attainment", "goodput_requests_per_s"}
    assert set(summary["run"]) >= {"wall_s", "cost_model", "config_hash", "version"}
    requests = pd.read_parquet(out / "requests.parquet")
    assert len(requests) == summary["num_requests"] == 80
    assert summary["num_finished"] + summary["num_rejected"] == 80


def test_set_overrides_and_seed_change_the_run(tmp_path, capsys):
    config = write_config(tmp_path, SMALL)
    run_cli(["run", str(config), "-o", str(tmp_path / "a"), "--set", "scheduler.max_num_seqs=1"], capsys)
    run_cli(["run", str(config), "-o", str(tmp_path / "b"), "--seed", "7"], capsys)
    a = yaml.safe_load((tmp_path / "a" / "config.yaml").read_text())
    b = yaml.safe_load((tmp_path / "b" / "config.yaml").read_text())
    assert a["scheduler"]["max_num_seqs"] == 1 and b["seed"] == 7


def test_same_config_and_seed_give_identical_outputs(tmp_path, capsys):
    config = write_config(tmp_path, SMALL)
    for name in ("first", "second"):
        assert run_cli(["run", str(config), "-o", str(tmp_path / name)], capsys)[0] == 0
    first = json.loads((tmp_path / "first" / "summary.json").read_text())
    second = json.loads((tmp_path / "second" / "summary.json").read_text())
    first["run"].pop("wall_s"), second["run"].pop("wall_s")
    assert first == second
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "first" / "requests.parquet"),
        pd.read_parquet(tmp_path / "second" / "requests.parquet"),
    )


BAD_INPUTS = [
    ("name: [unclosed\n", "malformed YAML"),
    (yaml.safe_dump({**SMALL, "schedulr": {"name": "vllm"}}), "schedulr: unknown key; did you mean 'scheduler'"),
    (yaml.safe_dump({**SMALL, "memory": {"block_size": 0}}),
     "memory.block_size: Input should be greater than or equal to 1"),
    (yaml.safe_dump({**SMALL, "workload": {**SMALL["workload"], "arrival": {"rate": -2}}}), "workload.arrival.rate"),
    (yaml.safe_dump({**SMALL, "scheduler": {"name": "vllm", "max_num_seq": 4}}), "did you mean 'max_num_seqs'"),
    (yaml.safe_dump({**SMALL, "scheduler": {"name": "fifo"}}), "unknown scheduler policy 'fifo'; valid names: "),
    (yaml.safe_dump({**SMALL, "model": "llama-9"}), "model: unknown model 'llama-9'"),
    (yaml.safe_dump({**SMALL, "hardware": "h900"}), "unknown hardware 'h900'"),
    (yaml.safe_dump({**SMALL, "cluster": {"parallel": {"tp": 16}}}), "larger than the 8 devices"),
    (yaml.safe_dump({**SMALL, "model": "llama-3.1-70b", "hardware": "l40s"}), "does not fit"),
    (yaml.safe_dump({**SMALL, "seed": "abc"}), "seed: Input should be a valid integer"),
    (yaml.safe_dump({**SMALL, "workload": {"trace": {"path": "missing.csv", "format": "azure"}}}),
     "no such trace file"),
]


@pytest.mark.parametrize("text, message", BAD_INPUTS)
def test_bad_input_is_one_paragraph_exit_two_and_no_results(tmp_path, capsys, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    out = tmp_path / "res"
    code, stdout, stderr = run_cli(["run", str(path), "-o", str(out)], capsys)
    assert code == 2
    assert message in stderr
    assert "Traceback" not in stderr
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".res")]


def test_bad_trace_row_is_reported_with_file_row_and_column(tmp_path, capsys):
    trace = tmp_path / "trace.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n0,10,5\n1,-3,5\n")
    config = write_config(tmp_path, {**SMALL, "workload": {"trace": {"path": "trace.csv", "format": "csv"}}})
    code, _, stderr = run_cli(["validate", str(config)], capsys)
    assert code == 2
    assert "trace.csv: row 3, column prompt_tokens: expected an integer >= 1, got '-3'" in stderr


def test_debug_shows_the_traceback(tmp_path, capsys):
    path = write_config(tmp_path, {**SMALL, "hardware": "h900"})
    code, _, stderr = run_cli(["run", str(path), "--debug"], capsys)
    assert code == 2 and "Traceback" in stderr


def test_validate_accepts_every_shipped_experiment(capsys):
    configs = sorted(str(p) for p in (ROOT / "experiments").glob("*.yaml"))
    assert configs
    code, stdout, stderr = run_cli(["validate", *configs], capsys)
    assert code == 0, stderr
    assert stdout.count(": ok") == len(configs)


def test_list_shows_catalogs_and_policies(capsys):
    code, stdout, _ = run_cli(["list"], capsys)
    assert code == 0
    for name in ("llama-3.1-8b", "deepseek-v3", "h100-sxm", "mi300x", "cpu", "vllm", "recompute", "round_robin",
                 "max_num_batched_tokens"):
        assert name in stdout


def test_hf_config_json_model(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({
        "num_hidden_layers": 4, "hidden_size": 512, "num_attention_heads": 8, "num_key_value_heads": 2,
        "intermediate_size": 1024, "vocab_size": 1000, "max_position_embeddings": 4096, "torch_dtype": "bfloat16",
    }))
    config = write_config(tmp_path, {**SMALL, "model": {"hf_config": "config.json"}})
    code, stdout, stderr = run_cli(["run", str(config), "-o", str(tmp_path / "r")], capsys)
    assert code == 0, stderr

"""`cost_model: {kind: table}` end to end through simrun, its errors, and a simulator without torch."""
import json
import subprocess
import sys
from pathlib import Path

import yaml

from servesim.sim.cli import main

ROOT = Path(__file__).resolve().parents[2]

CONFIG = {
    "name": "tables",
    "model": "llama-2-70b",
    "hardware": "a100-80g",
    "cost_model": {"kind": "table", "source": "vidur"},
    "cluster": {"parallel": {"tp": 2}},
    "scheduler": {"name": "vllm", "max_num_batched_tokens": 512},
    "workload": {
        "arrival": {"process": "poisson", "rate": 2.0},
        "prompt_tokens": {"dist": "uniform", "min": 100, "max": 3000},
        "output_tokens": {"dist": "uniform", "min": 5, "max": 200},
        "num_requests": 60,
    },
    "output": {"plots": False},
}


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_shipped_tables_run_end_to_end_and_the_summary_names_them(tmp_path, capsys):
    code = main(["run", str(write(tmp_path, CONFIG)), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 0
    assert "simrun: warning:" in err and "kv_cache_write" in err and "priced by the roofline" in err
    run = json.loads((tmp_path / "out" / "summary.json").read_text())["run"]["cost_model"]
    assert run["kind"] == "table" and run["tables"] == "hwmodels/data/tables/vidur/a100-80g/llama-2-70b"
    assert "attn_decode" in run["table_operators"] and "lm_head" in run["roofline_operators"]
    assert "Vidur" in run["source"]


def test_a_tables_directory_is_relative_to_the_config(tmp_path, capsys):
    shipped = ROOT / "hwmodels" / "data" / "tables" / "profiled" / "cpu" / "tiny-llama"
    (tmp_path / "mine").symlink_to(shipped)
    config = {**CONFIG, "model": "tiny-llama", "hardware": "cpu", "cluster": {"parallel": {"tp": 1}},
              "cost_model": {"kind": "table", "tables": "mine"}, "memory": {"num_kv_blocks": 512}}
    assert main(["run", str(write(tmp_path, config)), "-o", str(tmp_path / "out")]) == 0
    run = json.loads((tmp_path / "out" / "summary.json").read_text())["run"]["cost_model"]
    assert run["tables"].endswith("mine") and "cpu_overhead" in run["table_operators"]


def test_bad_tables_exit_2_with_one_paragraph(tmp_path, capsys):
    cases = [
        ({"cost_model": {"kind": "table", "tables": "missing"}}, "no such cost-table directory"),
        ({"hardware": "h200"}, "no shipped cost tables"),
        ({"cluster": {"parallel": {"tp": 3}}}, ""),
    ]
    for change, message in cases:
        code = main(["run", str(write(tmp_path, {**CONFIG, **change})), "-o", str(tmp_path / "never")])
        err = capsys.readouterr().err
        assert code == 2 and "Traceback" not in err and message in err
        assert not (tmp_path / "never").exists()


def test_sim_and_hwmodels_work_without_torch(tmp_path):
    """torch is only for the profiler: block it and run a tiny table-model experiment."""
    config = write(tmp_path, {**CONFIG, "workload": {**CONFIG["workload"], "num_requests": 5}})
    script = (
        "import sys; sys.modules['torch'] = None\n"
        "import hwmodels, hwmodels.tables, sim, sim.runner\n"
        "from sim.cli import main\n"
        f"code = main(['run', {str(config)!r}, '-o', {str(tmp_path / 'out')!r}])\n"
        f"code2 = main(['profile', '--model', 'tiny-llama', '--device', 'cpu', '-o', {str(tmp_path / 't')!r}])\n"
        "print('codes', code, code2)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "codes 0 2" in done.stdout, done.stderr
    assert "pip install -e '.[profile]'" in done.stderr

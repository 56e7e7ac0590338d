"""The compiled build (setup.py, SERVESIM_COMPILE=1) computes what its sources compute: each run
below gives the same summary and the same tables (requests, time series, iterations), to the bit,
from the installed compiled modules and from the repository's Python files."""
from __future__ import annotations

import ast
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.builds import compiled_only
from tests.test_packaging import PACKAGES

ROOT = Path(__file__).resolve().parents[2]

pytestmark = compiled_only

SHAPE = {
    "model": "llama-2-70b", "hardware": "a100-80g", "cluster": {"parallel": {"tp": 2}},
    "scheduler": {"name": "vllm", "max_num_batched_tokens": 512, "chunked_prefill": True},
    "workload": {"arrival": {"process": "poisson", "rate": 1.0}, "prompt_tokens": {"dist": "fixed", "value": 1024},
                 "output_tokens": {"dist": "fixed", "value": 256}, "num_requests": 400},
    "output": {"plots": False, "iterations": True},
}
"""`bench_core`'s shape, shorter, with its iteration table."""

RUNS = {
    "vllm": SHAPE,
    "sarathi": {**SHAPE, "scheduler": {"name": "sarathi", "max_num_batched_tokens": 512}},
    "stepped": {**SHAPE, "simulation": {"fast_forward": False}},
    "swaps under memory pressure": {
        **SHAPE, "preemption": {"name": "swap"}, "memory": {"num_kv_blocks": 700},
        "workload": {**SHAPE["workload"], "arrival": {"process": "poisson", "rate": 3.0},
                     "output_tokens": {"dist": "lognormal", "mean": 300, "sigma": 0.8}},
    },
    "prefix caching, two replicas": {
        "model": "llama-3.1-8b", "hardware": "h100-sxm",
        "cluster": {"replicas": 2, "router": {"name": "least_outstanding"}},
        "cache": {"prefix_caching": True}, "workload": {"trace": {"sample": "azure_conv", "format": "azure"}},
        "output": {"plots": False},
    },
}

SCRIPT = """
import hashlib, json, sys
from servesim.sim.engine import engine_build
from servesim.sim.experiment.loading import validate_config
from servesim.sim.runner import prepare, simulate
from servesim.sim.reporting.spill import read_table

def timeless(summary):
    if not isinstance(summary, dict):
        return summary
    return {key: timeless(value) for key, value in summary.items() if "wall" not in key}

outputs = {"build": engine_build()}
for name, config in json.loads(sys.argv[1]).items():
    result = simulate(prepare(validate_config({"name": "compiled", **config}, origin=name)))
    summary = timeless(result.summary)  # the wall-clock seconds it took differ
    files = result.files
    tables = {"requests": files.requests, "replica_series": files.replica_series,
              "system_series": files.system_series, "iterations": files.iterations}
    outputs[name] = {"summary": json.dumps(summary, sort_keys=True, default=str)} | {
        table: hashlib.sha256(read_table(path).to_csv(float_format="%r").encode()).hexdigest()
        for table, path in tables.items() if path is not None}
print(json.dumps(outputs))
"""


def _outputs(env: dict[str, str], cwd: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(RUNS)], capture_output=True, text=True,
                          env=env, cwd=cwd, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _sources(tmp_path: Path) -> Path:
    """A folder from which `servesim` imports as the repository's Python files."""
    package = tmp_path / "sources" / "servesim"
    package.mkdir(parents=True)
    for folder in PACKAGES:
        (package / folder).symlink_to(ROOT / folder, target_is_directory=True)
    return package.parent


def test_the_compiled_build_computes_what_its_sources_compute(tmp_path):
    compiled = _outputs(dict(os.environ), tmp_path)
    interpreted = _outputs({**os.environ, "PYTHONPATH": str(_sources(tmp_path))}, tmp_path)
    assert (compiled.pop("build"), interpreted.pop("build")) == ("compiled", "interpreted")
    for name in RUNS:
        assert compiled[name] == interpreted[name], name


def test_every_listed_module_is_compiled():
    setup = ast.parse((ROOT / "setup.py").read_text())
    listed = next(node.value for node in setup.body if isinstance(node, ast.Assign)
                  and getattr(node.targets[0], "id", "") == "COMPILED_MODULES")
    paths = ast.literal_eval(listed)
    assert paths
    for path in paths:
        module = importlib.import_module("servesim." + path.removesuffix(".py").replace("/", "."))
        assert module.__file__ is not None and not module.__file__.endswith(".py"), module.__file__

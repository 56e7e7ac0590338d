"""Fidelity on CPU: the reference engine vs the simulator on experiments/fidelity_cpu_tiny.yaml.

Profiles tiny-llama once on this CPU (or reuses `--tables DIR`), then runs `simrun fidelity`
`--runs` times with those tables, each in a fresh process, and prints each run's figures and
their median. Timings on a
shared or busy machine are noisy: report the median and the spread, with the conditions.

    python benchmarks/bench_fidelity.py [--runs 3] [--tables DIR] [--config FILE]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from servesim.profiler.profile import ProfileRequest, profile

ROOT = Path(__file__).resolve().parents[1]
FIGURES = [("iteration median", ("iteration_error", "median")), ("iteration p90", ("iteration_error", "p90"))] + [
    (f"{name.removesuffix('_s').upper()} {p}", ("latency", name, p, "relative_error"))
    for name in ("ttft_s", "tbt_s", "e2e_s") for p in ("p50", "p90", "p99")
]


def figure(report: dict, path: tuple[str, ...]) -> float:
    value = report
    for key in path:
        value = value[key]
    return float(value)


def fidelity_run(config: Path, tables: Path, out: Path) -> dict:
    """One `simrun fidelity` in a process of its own: runs repeated in one process slow down as
    it ages (allocator and kernel caches), which the tables, profiled fresh, do not see."""
    command = [sys.executable, "-m", "servesim.sim.cli", "fidelity", str(config), "--no-progress",
               "--set", f"cost_model.tables={tables.resolve()}", "-o", str(out)]
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return json.loads((out / "report.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tables", type=Path, help="reuse these tables instead of profiling")
    parser.add_argument("--config", type=Path, default=ROOT / "experiments" / "fidelity_cpu_tiny.yaml")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tables = args.tables or profile(ProfileRequest("tiny-llama", "cpu"), Path(tmp) / "tables", progress=False)
        reports = [fidelity_run(args.config, tables, Path(tmp) / f"run{i}") for i in range(args.runs)]
    print(f"{reports[0]['model']} on {reports[0]['device']}, torch {reports[0]['torch_version']}, "
          f"{reports[0]['num_requests']} requests, {args.runs} runs")
    print(f"{'figure':<20}" + "".join(f"{f'run {i + 1}':>10}" for i in range(args.runs)) + f"{'median':>10}")
    for label, path in FIGURES:
        values = [figure(r, path) for r in reports]
        fmt = "10.1%" if path[0] == "iteration_error" else "+10.1%"  # iteration errors are absolute
        print(f"{label:<20}" + "".join(f"{v:>{fmt}}" for v in values) + f"{statistics.median(values):>{fmt}}")


if __name__ == "__main__":
    main()

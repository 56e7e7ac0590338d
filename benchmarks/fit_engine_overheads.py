"""Fit the engine's own time (issue 8, item 3) from the real vLLM runs, one set per GPU and engine.

The cost model is taken as given (whatever `simrun validate-real` uses for the run: shipped
tables or the roofline), so re-run this after the kernel model changes. For each group of runs
(same replay hardware, same engine version) the terms are switched on one at a time and each
stage's error is printed: the mean absolute relative error over the targeted figures (TTFT,
TPOT, E2E mean/p50/p90/p99) of every run in the group. Stages:

  0. kernels only (no CPU time, no padding, synchronous scheduling)
  1. + CUDA-graph padding of decode batches (the run's capture sizes)
  2. + asynchronous scheduling (arrivals wait one extra step)
  3. + per-iteration CPU term, fitted
  4. + per-sequence CPU term, fitted (the per-iteration term refitted with it)

The API server's inbound per-prompt-token term is the slope of (engine queue time - client send
time) over prompt tokens: the two clocks differ by an unknown constant, so the fixed part and
the stream-out delay are not identifiable from these runs and stay 0 (stated as such).

    python benchmarks/fit_engine_overheads.py [--runs DIR] [--stand-in GPU=CATALOG ...] [--write]

`--write` stores the fitted sets in sim/engine/engine_overheads.yaml (keyed by the replay's
hardware catalog name: with a stand-in, the stand-in's name).
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml
from scipy.optimize import minimize_scalar

from bench_real_runs import DEFAULT_RUNS, replay_all, stand_ins
from servesim.sim.validation.real_runs import VLLM_REQUESTS, find_runs

OVERHEADS_FILE = Path(__file__).resolve().parents[1] / "sim" / "engine" / "engine_overheads.yaml"
PER_ITERATION_GRID_S = (0.0, 0.5e-3, 1e-3, 2e-3, 3e-3, 5e-3, 8e-3)
PER_SEQUENCE_GRID_S = (0.0, 5e-6, 10e-6, 20e-6, 40e-6, 80e-6)


def group_error(root: Path, substitutes: dict[str, str], cost_model: str, overrides: list[str]) -> dict[str, float]:
    """Mean |relative error| over the targeted figures, per group (hardware, engine)."""
    done, _ = replay_all(root, substitutes, cost_model, overrides)
    errors: dict[str, list[float]] = defaultdict(list)
    for replayed in done:
        key = f"{replayed.config.hardware} {replayed.run.settings.engine}"
        figures = replayed.table.dropna(subset=["target"])
        errors[key] += list(np.abs(figures["rel_error"].to_numpy(float)))
    return {key: float(np.mean(values)) for key, values in errors.items()}


def stage_overrides(stage: int, per_iteration_s: float = 0.0, per_sequence_s: float = 0.0) -> list[str]:
    return [
        "engine.version=none",
        f"engine.cuda_graphs={'true' if stage >= 1 else 'false'}",
        f"engine.async_scheduling={'true' if stage >= 2 else 'false'}",
        f"engine.cpu_per_iteration_s={per_iteration_s}",
        f"engine.cpu_per_sequence_s={per_sequence_s}",
    ]


def fit_term(error_at, grid: tuple[float, ...]) -> tuple[float, float]:
    """Grid search, then a bounded Brent refinement between the best point's neighbours."""
    values = [error_at(x) for x in grid]
    best = int(np.argmin(values))
    low, high = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    if high > low:
        found = minimize_scalar(error_at, bounds=(low, high), method="bounded", options={"xatol": low * 0.02 + 1e-6})
        if found.fun < values[best]:
            return float(found.x), float(found.fun)
    return grid[best], values[best]


def api_per_prompt_token_s(root: Path) -> float:
    """Median slope of the client-to-engine delay over prompt tokens; 0 when the runs' slopes disagree in
    sign (not resolved). The intercept is not identifiable: the two clocks differ by a constant."""
    slopes = []
    for run_dir in find_runs(root):
        path = run_dir / VLLM_REQUESTS
        if not path.is_file():
            continue
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        tokens = np.array([r["input_toks"] for r in rows], float)
        delay = np.array([r["queued_ts"] - r["arrival_time"] for r in rows], float)
        slopes.append(np.polyfit(tokens, delay - delay.min(), 1)[0])
    if not slopes or min(slopes) < 0 < max(slopes):
        return 0.0
    return max(0.0, float(np.median(slopes)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=DEFAULT_RUNS)
    parser.add_argument("--stand-in", action="append", default=[], metavar="GPU=CATALOG")
    parser.add_argument("--cost-model", choices=("auto", "table", "roofline"), default="auto")
    parser.add_argument("--write", action="store_true", help=f"store the fitted sets in {OVERHEADS_FILE.name}")
    args = parser.parse_args()
    substitutes = stand_ins(args.stand_in)

    def errors(stage: int, per_iteration_s: float = 0.0, per_sequence_s: float = 0.0) -> dict[str, float]:
        return group_error(args.runs, substitutes, args.cost_model, stage_overrides(stage, per_iteration_s, per_sequence_s))

    stages = [errors(0), errors(1), errors(2)]
    api_slope = api_per_prompt_token_s(args.runs)
    fitted = {}
    for group in stages[0]:
        per_iteration, err3 = fit_term(lambda x: errors(2, x)[group], PER_ITERATION_GRID_S)
        per_sequence, _ = fit_term(lambda x: errors(2, per_iteration, x)[group], PER_SEQUENCE_GRID_S)
        per_iteration, err4 = fit_term(lambda x: errors(2, x, per_sequence)[group], PER_ITERATION_GRID_S)
        trail = [stages[0][group], stages[1][group], stages[2][group], err3, err4]
        print(f"{group}: mean |error| over the targeted figures, by stage (share of the stage-0 error removed)")
        names = ("kernels only", "+ CUDA-graph padding", "+ async scheduling", "+ per-iteration CPU", "+ per-sequence CPU")
        for k, (name, value) in enumerate(zip(names, trail)):
            removed = "" if k == 0 else f" ({(trail[k - 1] - value) / trail[0]:+.0%})" if trail[0] else ""
            print(f"  {k}. {name:<24}{value:8.2%}{removed}")
        print(f"  fitted: cpu_per_iteration_s={per_iteration:.6f} cpu_per_sequence_s={per_sequence:.2e} "
              f"api_per_prompt_token_s={api_slope:.2e} (0: not resolved; fixed and stream-out terms not identifiable: 0)")
        hardware, engine = group.split(" ", 1)
        fitted[(hardware, engine)] = {
            "cpu_per_iteration_s": round(per_iteration, 6), "cpu_per_sequence_s": round(per_sequence, 8),
            "api_fixed_s": 0.0, "api_per_prompt_token_s": round(api_slope, 10), "api_stream_out_s": 0.0,
            "source": f"benchmarks/fit_engine_overheads.py on the real_vllm_runs replayed on {hardware} ({args.cost_model} cost model)",
        }
    if args.write:
        write_sets(fitted)


def write_sets(fitted: dict[tuple[str, str], dict], path: Path = OVERHEADS_FILE) -> None:
    """Merge the fitted sets into engine_overheads.yaml, keeping its header comment."""
    text = path.read_text()
    header = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
    data = yaml.safe_load(text)
    for (hardware, engine), values in fitted.items():
        version = engine.replace("vllm ", "vllm-").rsplit(".", 1)[0]
        data.setdefault(version, {})[hardware] = values
    path.write_text(header + yaml.safe_dump(data, sort_keys=False, width=120))


if __name__ == "__main__":
    main()

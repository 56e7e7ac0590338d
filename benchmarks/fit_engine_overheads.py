"""Fit the engine's own time (issue 8, item 3) from the real vLLM runs: one set per engine version.

The CPU work between kernels (scheduling, input preparation, sampling, detokenisation) is the
engine's, not the GPU's, so one set is fitted per engine version and shared by every GPU (stored
as the version's `default` in engine_overheads.yaml). The cost model is taken as given (whatever
`simrun validate-real` uses for the run: shipped tables or the calibrated roofline), so re-run
this after the kernel model changes. The error is the mean absolute relative error over the
targeted figures (TTFT, TPOT, E2E mean/p50/p90/p99) of the runs fitted on. Stages, each term
switched on in turn with its share of the stage-0 error removed:

  0. kernels only (no CPU time, no padding, synchronous scheduling)
  1. + CUDA-graph padding of decode batches (the run's capture sizes)
  2. + asynchronous scheduling (arrivals wait one extra step)
  3. + per-iteration CPU term, fitted (grid search)
  4. + per-sequence CPU term, fitted jointly with the per-iteration term (grid search)
  5. + host time of a step that does not run as one full CUDA graph (a prefill chunk in it),
     fitted jointly with the other two on a coarser grid

Then leave-one-run-out: for each run, the three terms fitted on the others and the held-out
run's error with them. `--exclude RUN` leaves a run out of the fit (say why when quoting the result).

The API server's inbound per-prompt-token term is the slope of (engine queue time - client send
time) over prompt tokens: the two clocks differ by an unknown constant, so the fixed part and
the stream-out delay are not identifiable from these runs and stay 0 (stated as such).

    python benchmarks/fit_engine_overheads.py [--runs DIR] [--exclude RUN ...] [--write]

`--write` stores the fitted set as the engine version's `default` in sim/engine/engine_overheads.yaml.
"""
from __future__ import annotations

import argparse
import itertools
import json
import tempfile
from functools import cache
from pathlib import Path

import numpy as np
import yaml
from bench_real_runs import DEFAULT_RUNS

from servesim.sim.validation.real_runs import VLLM_REQUESTS, RealRun, find_runs, read_run
from servesim.sim.validation.replay import ReplayOptions, replay

OVERHEADS_FILE = Path(__file__).resolve().parents[1] / "sim" / "engine" / "engine_overheads.yaml"
PER_ITERATION_GRID_S = (0.0, 0.25e-3, 0.5e-3, 1e-3, 1.5e-3, 2e-3, 3e-3, 5e-3)
PER_SEQUENCE_GRID_S = (0.0, 2.5e-6, 5e-6, 10e-6, 20e-6, 40e-6)
JOINT_GRID_S = ((0.0, 0.25e-3, 0.5e-3), (0.0, 5e-6, 10e-6), (0.0, 2e-3, 4e-3, 6e-3, 8e-3))
"""Stage 5's grid: per-iteration, per-sequence and per-eager-step seconds (coarser: 45 settings)."""
STAGES = ("kernels only", "+ CUDA-graph padding", "+ async scheduling", "+ per-iteration CPU", "+ per-sequence CPU",
          "+ eager-step host time")


def stage_overrides(stage: int, per_iteration_s: float = 0.0, per_sequence_s: float = 0.0,
                    per_eager_s: float = 0.0) -> list[str]:
    return [
        "engine.version=none",
        f"engine.cuda_graphs={'true' if stage >= 1 else 'false'}",
        f"engine.async_scheduling={'true' if stage >= 2 else 'false'}",
        f"engine.cpu_per_iteration_s={per_iteration_s}",
        f"engine.cpu_per_sequence_s={per_sequence_s}",
        f"engine.cpu_per_eager_iteration_s={per_eager_s}",
    ]


class RunErrors:
    """Each run's mean |relative error| over its targeted figures, replayed once per setting."""

    def __init__(self, runs: list[RealRun]) -> None:
        self.runs = {run.name: run for run in runs}
        self.error = cache(self._error)

    def _error(self, name: str, stage: int, per_iteration_s: float, per_sequence_s: float,
               per_eager_s: float = 0.0) -> float:
        options = ReplayOptions(overrides=stage_overrides(stage, per_iteration_s, per_sequence_s, per_eager_s))
        with tempfile.TemporaryDirectory() as work:
            table = replay(self.runs[name], options, Path(work)).table.dropna(subset=["target"])
        return float(np.mean(np.abs(table["rel_error"].to_numpy(float))))

    def mean(self, names: list[str], stage: int, per_iteration_s: float = 0.0, per_sequence_s: float = 0.0,
             per_eager_s: float = 0.0) -> float:
        return float(np.mean([self.error(name, stage, per_iteration_s, per_sequence_s, per_eager_s)
                              for name in names]))

    def fit(self, names: list[str], with_sequence: bool = True, with_eager: bool = False
            ) -> tuple[float, float, float, float]:
        """(per-iteration s, per-sequence s, per-eager-step s, error) minimising the mean error over
        `names` on the grid (`JOINT_GRID_S` with the eager-step term)."""
        if with_eager:
            grid = itertools.product(*JOINT_GRID_S)
        else:
            grid = itertools.product(PER_ITERATION_GRID_S, PER_SEQUENCE_GRID_S if with_sequence else (0.0,), (0.0,))
        return min(((it, seq, eager, self.mean(names, 2, it, seq, eager)) for it, seq, eager in grid),
                   key=lambda found: found[3])


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
    parser.add_argument("--exclude", action="append", default=[], metavar="RUN", help="leave a run out of the fit")
    parser.add_argument("--write", action="store_true", help=f"store the fitted set in {OVERHEADS_FILE.name}")
    args = parser.parse_args()
    runs = [read_run(run_dir) for run_dir in find_runs(args.runs)]
    errors = RunErrors(runs)
    names = [run.name for run in runs if run.name not in args.exclude]
    engines = sorted({run.settings.engine for run in runs})
    trail = [errors.mean(names, stage) for stage in range(3)]
    per_iteration_only, _, _, err3 = errors.fit(names, with_sequence=False)
    per_iteration_pair, per_sequence_pair, _, err4 = errors.fit(names)
    per_iteration, per_sequence, per_eager, err5 = errors.fit(names, with_eager=True)
    trail += [err3, err4, err5]
    print(f"fitted on {', '.join(names)} ({', '.join(engines)})")
    print("mean |error| over the targeted figures, by stage (share of the stage-0 error removed)")
    for k, (name, value) in enumerate(zip(STAGES, trail, strict=True)):
        removed = "" if k == 0 else f" ({(trail[k - 1] - value) / trail[0]:+.0%})"
        print(f"  {k}. {name:<24}{value:8.2%}{removed}")
    api_slope = api_per_prompt_token_s(args.runs)
    print(f"fitted: cpu_per_iteration_s={per_iteration:.6f} cpu_per_sequence_s={per_sequence:.2e} "
          f"cpu_per_eager_iteration_s={per_eager:.6f} (per-iteration alone: {per_iteration_only:.6f}; "
          f"without the eager-step term: {per_iteration_pair:.6f}, {per_sequence_pair:.2e}) "
          f"api_per_prompt_token_s={api_slope:.2e} (0: not resolved; fixed and stream-out terms not identifiable: 0)")
    print("per run with the fitted set | leave-one-run-out (fitted on the other runs):")
    for run in runs:
        others = [name for name in names if name != run.name]
        held_it, held_seq, held_eager, _ = errors.fit(others, with_eager=True)
        print(f"  {run.name:<42} {errors.error(run.name, 2, per_iteration, per_sequence, per_eager):7.2%} | "
              f"{errors.error(run.name, 2, held_it, held_seq, held_eager):7.2%} (per-iteration "
              f"{held_it * 1e3:.2f} ms, per-sequence {held_seq * 1e6:.1f} us, per eager step "
              f"{held_eager * 1e3:.1f} ms; kernels only {errors.error(run.name, 2, 0.0, 0.0):.2%})")
    if args.write:
        source = (f"benchmarks/fit_engine_overheads.py on {', '.join(names)} (real_vllm_runs, {', '.join(engines)}), "
                  "shipped tables where they exist, calibrated roofline elsewhere; shared by every GPU")
        write_default(engines[0].replace("vllm ", "vllm-").rsplit(".", 1)[0], {
            "cpu_per_iteration_s": round(per_iteration, 6), "cpu_per_sequence_s": round(per_sequence, 8),
            "cpu_per_eager_iteration_s": round(per_eager, 6),
            "api_fixed_s": 0.0, "api_per_prompt_token_s": round(api_slope, 10), "api_stream_out_s": 0.0,
            "source": source,
        })


def write_default(version: str, values: dict, path: Path = OVERHEADS_FILE) -> None:
    """Store `values` as `version`'s shared default set in engine_overheads.yaml (replacing any
    per-GPU sets), keeping the file's header comment."""
    text = path.read_text()
    header = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
    data = yaml.safe_load(text)
    data[version] = {"default": values}
    path.write_text(header + yaml.safe_dump(data, sort_keys=False, width=120))


if __name__ == "__main__":
    main()

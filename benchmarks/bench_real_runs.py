"""Simulated versus real on every shipped real vLLM run this catalog can map (issue 8, item 7).

For each run under the real-runs folder (default: ../shared/reference/real_vllm_runs beside the
repository) this replays the run as `simrun validate-real` does and prints each figure's real and
simulated value, the relative error and the target (TPOT mean/p50/p90 within 5%; TTFT and E2E
mean/p50/p90 within 10%; p99 within 15%). A run whose model or GPU has no catalog entry is listed
as not mapped, with the reason. `--stand-in rtx-4090=l40s` replays a GPU's runs on another
catalog entry (say so when quoting the numbers).

    python benchmarks/bench_real_runs.py [--runs DIR] [--stand-in GPU=CATALOG ...] [--cost-model auto|table|roofline]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from servesim.sim.errors import UserInputError
from servesim.sim.validation.real_runs import find_runs, read_run
from servesim.sim.validation.replay import Replay, ReplayOptions, mapped_name, replay, report

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RUNS = next((p for p in (REPO.parent / "shared", REPO.parents[1] / "shared") if p.is_dir()),
                    REPO.parent / "shared") / "reference" / "real_vllm_runs"


def stand_ins(pairs: list[str]) -> dict[str, str]:
    """`GPU=CATALOG` pairs: GPU is the name names.yaml maps the run's device to (e.g. rtx-4090)."""
    return dict(pair.split("=", 1) for pair in pairs)


def replay_all(root: Path, substitutes: dict[str, str], cost_model: str = "auto",
               overrides: list[str] | None = None) -> tuple[list[Replay], list[tuple[str, str]]]:
    """Replays of every mappable run under `root`, and (run, reason) for the others."""
    done, skipped = [], []
    for run_dir in find_runs(root):
        run = read_run(run_dir)
        gpu = mapped_name("hardware", run.settings.hardware)
        options = ReplayOptions(hardware=substitutes.get(gpu), cost_model=cost_model,
                                overrides=list(overrides or []))
        try:
            with tempfile.TemporaryDirectory() as work:
                done.append(replay(run, options, Path(work)))
        except UserInputError as exc:
            skipped.append((run.name, str(exc)))
    return done, skipped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=DEFAULT_RUNS, help="folder holding real runs")
    parser.add_argument("--stand-in", action="append", default=[], metavar="GPU=CATALOG",
                        help="replay a GPU without a catalog entry on another entry, e.g. rtx-4090=l40s")
    parser.add_argument("--cost-model", choices=("auto", "table", "roofline"), default="auto")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE")
    args = parser.parse_args()
    done, skipped = replay_all(args.runs, stand_ins(args.stand_in), args.cost_model, args.overrides)
    for replayed in done:
        print(report(replayed) + "\n")
    for name, reason in skipped:
        print(f"{name}: not mapped: {reason}\n")
    print(f"{'run':<42} {'cost model':<10} in target")
    for replayed in done:
        targeted = replayed.table.dropna(subset=["target"])
        used = replayed.result.summary["run"]["cost_model"]["kind"]  # what `auto` chose
        print(f"{replayed.run.name:<42} {used:<10} "
              f"{int(targeted['within_target'].astype(bool).sum())}/{len(targeted)}")
    figures = [row for replayed in done for row in replayed.table.itertuples() if row.target == row.target]
    met = sum(bool(row.within_target) for row in figures)
    print(f"{len(done)} run(s) replayed, {len(skipped)} not mapped; {met}/{len(figures)} figures within target")


if __name__ == "__main__":
    main()

"""`simrun plan CONFIG`: search the config's `plan:` block and print the table of candidates and the best plan.

Exit status: 0 when every candidate that can run was searched, 1 when some failed while running
(the others are still in the table), 2 for bad input (nothing run), 128 + signal number when
interrupted (the finished candidates are written; rerunning resumes).
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from servesim.sim.experiment.config import ExperimentConfig

EXIT_CANDIDATES_FAILED = 1


def add_command(sub: Any) -> None:
    """Register `plan` on simrun's subcommands."""
    plan = sub.add_parser("plan", help="search pool sizes and parallel plans for the most goodput per GPU")
    plan.add_argument("config", type=Path, help="experiment YAML file with a plan: block")
    plan.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                      help="override a config key (repeatable), also in the plan, e.g. --set plan.gpus=16")
    plan.add_argument("-o", "--output", help="results directory (default: output.dir or results/<name>); rerun "
                      "into it to resume")
    plan.add_argument("--jobs", type=int, help="local worker processes (default: one per CPU)")
    plan.add_argument("--backend", choices=("local", "ray"), default="local",
                      help="local processes (default) or a Ray cluster (pip install 'servesim[ray]')")
    plan.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray instance)")
    plan.add_argument("-q", "--quiet", "--no-progress", dest="quiet", action="store_true",
                      help="no progress bar (terminal) and no progress lines (pipe or log) on stderr")
    plan.add_argument("--debug", action="store_true", help="show tracebacks")
    plan.set_defaults(handler=run_command)


def run_command(args: argparse.Namespace) -> int:
    from servesim.sim.experiment.loading import load_config
    from servesim.sim.placement.run import run_plan
    from servesim.sim.placement.table import format_table
    from servesim.sim.reporting.output_target import check_directory_name
    from servesim.sim.sweeps.command import PointsProgress

    config, base_dir = load_config(args.config, args.overrides)
    output = args.output if args.output is not None else config.output.dir
    if output is None:
        check_directory_name(config.name, "experiment name:")
        output = str(Path("results", config.name))
    progress = None if args.quiet else PointsProgress(sys.stderr, what="plan", unit="candidate")
    try:
        report = run_plan(config, base_dir, output, jobs=args.jobs, backend=args.backend, address=args.address,
                          on_begin=progress.begin if progress else None,
                          on_finished=progress.finished if progress else None)
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        print(f"simrun: plan interrupted by {signal.Signals(signum).name}; the candidates that finished are in "
              f"{output}: run the same command again to resume", file=sys.stderr)
        return 128 + signum
    finally:
        if progress is not None:
            progress.end()
    assert config.plan is not None  # run_plan refuses a config without one
    print(f"placement search on {config.plan.gpus} GPUs, SLO attainment target {config.slo.attainment_target:.0%}: "
          f"{len(report.table)} candidates ({report.num_resumed} from an earlier run)")
    print(format_table(report.table))
    best = report.best
    if best is None:
        print("no candidate meets the target even at plan.min_rate: lower plan.min_rate or relax the SLOs")
    else:
        bound = " (at least: raise plan.max_rate to rank it)" if best["bound"] == "at_least" else ""
        print(f"best: {best['candidate']} {best['label']} on {best['gpus']} GPUs: "
              f"{best['max_goodput_requests_per_s']:,.3f} req/s, {best['goodput_per_gpu']:,.3f} per GPU{bound}")
    print(f"results: {report.output}")
    return EXIT_CANDIDATES_FAILED if (report.table["status"] == "failed").any() else 0


def validate_plan(config: ExperimentConfig, base_dir: Path) -> str:
    """`simrun validate` of a config with a plan: check every candidate; says how many can run."""
    from servesim.sim.placement.run import check_plan

    checked = check_plan(config, base_dir)
    total = len(checked.tasks) + len(checked.skipped)
    return (f"a plan of {total} candidates, {len(checked.tasks)} can run, {len(checked.skipped)} skipped; rates "
            f"{checked.min_rate:,.3g} to {checked.max_rate:,.3g} req/s on the whole budget")

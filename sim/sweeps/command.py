"""`simrun sweep CONFIG`: run every point of a config's `sweep:` block, with progress over points.

Exit status: 0 when every point ran, 1 when some failed (the others still ran and are in the
table), 2 for bad input (nothing run), 128 + signal number when interrupted (finished points kept).
"""
from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from servesim.sim.reporting.progress import ProgressMode, ProgressReporter
from servesim.sim.sweeps.progress import PointsExtent, SweepProgress

if TYPE_CHECKING:
    from servesim.sim.experiment.config import ExperimentConfig
    from servesim.sim.sweeps.table import PointRow

EXIT_POINTS_FAILED = 1


def add_command(sub: Any) -> None:
    """Register `sweep` on simrun's subcommands."""
    sweep = sub.add_parser("sweep", help="run every point of a config's sweep: block into one table")
    sweep.add_argument("config", type=Path, help="experiment YAML file with a sweep: block")
    sweep.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                       help="override a config key (repeatable), also inside the sweep, e.g. --set sweep.seeds=[0,1]")
    sweep.add_argument("-o", "--output", help="sweep directory (default: output.dir or results/<name>); rerun "
                       "into it to resume")
    sweep.add_argument("--jobs", type=int, help="local worker processes (default: one per CPU)")
    sweep.add_argument("--backend", choices=("local", "ray"), default="local",
                       help="local processes (default) or a Ray cluster (pip install 'servesim[ray]')")
    sweep.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray instance)")
    sweep.add_argument("-q", "--quiet", "--no-progress", dest="quiet", action="store_true",
                       help="no progress bar (terminal) and no progress lines (pipe or log) on stderr")
    sweep.add_argument("--debug", action="store_true", help="show tracebacks")
    sweep.set_defaults(handler=run_command)


def run_command(args: argparse.Namespace) -> int:
    from servesim.sim.experiment.loading import load_config
    from servesim.sim.reporting.output_target import check_directory_name
    from servesim.sim.sweeps.run import run_sweep

    config, base_dir = load_config(args.config, args.overrides)
    output = args.output if args.output is not None else config.output.dir
    if output is None:
        check_directory_name(config.name, "experiment name:")
        output = str(Path("results", config.name))
    progress = SweepProgress() if args.quiet else PointsProgress(sys.stderr)
    try:
        report = run_sweep(config, base_dir, output, jobs=args.jobs, backend=args.backend, address=args.address,
                           progress=progress, origin=str(args.config))
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        print(f"simrun: sweep interrupted by {signal.Signals(signum).name}; the points that finished are kept in "
              f"{output} and listed in its sweep.parquet: run the same command again to resume", file=sys.stderr)
        return 128 + signum
    failed = report.table[report.table["status"] == "failed"]
    table_path = report.directory.path / "sweep.parquet"
    print(f"{len(report.table)} points: {len(report.table) - len(failed)} ok ({report.num_resumed} from an earlier "
          f"run), {len(failed)} failed; table: {Path(report.directory.shown) / table_path.name}")
    for _, row in failed.iterrows():
        error = " ".join(str(row["error"]).split())
        print(f"  {row['point']} ({row['label']}) failed: {error}", file=sys.stderr)
    return EXIT_POINTS_FAILED if len(failed) else 0


def validate_sweep(config: ExperimentConfig, base_dir: Path, origin: str) -> str:
    """`simrun validate` of a sweep: expand and prepare every point; says how many there are."""
    from servesim.sim.experiment.sweep_points import expand_sweep
    from servesim.sim.sweeps.run import check_points

    points = expand_sweep(config, origin)
    check_points(points, base_dir)
    return f"a sweep of {len(points)} points, each checked"


class PointsProgress(SweepProgress):
    """In a terminal, the bar `simrun run` draws (`sim.reporting.progress`), over points; one line per
    finished point otherwise (logs, CI).

    `what` names the command in its lines and `unit` what it counts (`simrun plan` counts candidates).
    """

    def __init__(self, stream: TextIO, clock: Any = time.monotonic, what: str = "sweep", unit: str = "point") -> None:
        self.stream = stream
        self.clock = clock
        self.what = what
        self.unit = unit
        self.bar: ProgressReporter | None = None
        self.total = 0
        self.done = 0
        self.started = 0.0
        self.run_here = 0

    def begin(self, num_points: int, num_resumed: int) -> None:
        self.total, self.done, self.started = num_points, num_resumed, self.clock()
        if self.stream.isatty():
            self.bar = ProgressReporter(PointsExtent(num_points, num_resumed, self.unit), ProgressMode.BAR, self.stream,
                                        self.what, clock=self.clock, delay_s=0.0, check_every=1)
            self.bar(num_resumed, 0.0)
        elif num_resumed:
            print(f"{self.what}: {num_resumed} of {num_points} {self.unit}s finished earlier, skipped",
                  file=self.stream)

    def advance(self, row: PointRow) -> None:
        self.finished(row.point.name, row.point.label, row.error)

    def finished(self, name: str, label: str, error: str | None) -> None:
        """One more point is done (`error` None when it succeeded)."""
        self.done += 1
        self.run_here += 1
        status = "ok" if error is None else "FAILED"
        if self.bar is not None:
            if error is not None:
                self.bar.note(f"{name} ({label}) failed")
            self.bar(self.done, 0.0)
            return
        elapsed = self.clock() - self.started
        remaining = elapsed / self.run_here * (self.total - self.done)
        print(f"{self.what}: [{self.done}/{self.total}] {name} {status} ({label}); "
              f"elapsed {_clock(elapsed)}, eta {_clock(remaining)}", file=self.stream, flush=True)

    def end(self) -> None:
        if self.bar is None:
            return
        if self.done == self.total:
            self.bar.finish()
        else:
            self.bar.abandon()


def _clock(seconds: float) -> str:
    whole = int(round(seconds))
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"

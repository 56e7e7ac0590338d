"""Running a sweep: expand and check every point, skip those finished earlier, run the rest, write the table.

Everything that can be wrong with the input (a bad point, a directory that cannot be written)
is refused before the first point runs. A point that fails while running is recorded with its
error and the others go on. On an interrupt the points already written stay, and the table is
written for the points that finished; rerunning the same sweep resumes it.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from servesim.sim.errors import ConfigError
from servesim.sim.experiment.config import ExperimentConfig
from servesim.sim.experiment.sweep_points import SweepPoint, expand_sweep, swept_columns
from servesim.sim.reporting.output_target import resolve_target
from servesim.sim.sweeps.backends import Backend, check_options, run_tasks
from servesim.sim.sweeps.output import (
    SWEEP_FILE,
    TABLE_FILE,
    SweepDirectory,
    check_same_sweep,
    check_sweep_directory,
    finished_point,
    locked,
    sweep_manifest,
    write_atomically,
    write_point,
)
from servesim.sim.sweeps.points import PointOutcome, PointTask
from servesim.sim.sweeps.progress import SweepProgress
from servesim.sim.sweeps.table import PointRow, sweep_table


@dataclass
class SweepReport:
    """The outcome of a sweep: its directory, its table, and which points were resumed or failed."""

    directory: SweepDirectory
    table: pd.DataFrame
    num_resumed: int

    @property
    def failed(self) -> list[str]:
        return list(self.table.loc[self.table["status"] == "failed", "point"])


def run_sweep(
    config: ExperimentConfig,
    base_dir: Path,
    output: str | os.PathLike[str],
    *,
    jobs: int | None = None,
    backend: Backend = "local",
    address: str | None = None,
    progress: SweepProgress | None = None,
    origin: str = "<config>",
) -> SweepReport:
    """Run every point of `config.sweep` not finished earlier into `output`; see the module docstring."""
    check_options(backend, jobs, address)
    points = expand_sweep(config, origin)
    assert config.sweep is not None  # expand_sweep refuses a config without one
    swept = swept_columns(config.sweep)
    directory = check_sweep_directory(output)
    manifest = sweep_manifest(config, points)
    check_same_sweep(directory, manifest)
    _check_pending(directory, [p for p in points if finished_point(directory, p) is None], base_dir)
    progress = progress or SweepProgress()
    with locked(directory):
        check_same_sweep(directory, manifest)  # again: another sweep may have written it meanwhile
        rows = _resumed_rows(directory, points)
        pending = [p for p in points if p.name not in rows]
        manifest_text = yaml.safe_dump(manifest, sort_keys=False)
        write_atomically(directory.path / SWEEP_FILE, lambda path: path.write_text(manifest_text))
        progress.begin(len(points), len(rows))
        by_name = {p.name: p for p in pending}
        outcomes = run_tasks([PointTask(p.name, p.config, str(base_dir)) for p in pending], backend, jobs, address)
        try:
            for outcome in outcomes:
                row = _record(directory, by_name[outcome.name], outcome)
                rows[row.point.name] = row
                progress.advance(row)
        finally:
            outcomes.close()
            progress.end()
            table = sweep_table(rows.values(), swept)
            write_atomically(directory.path / TABLE_FILE, lambda path: table.to_parquet(path, index=False))
    return SweepReport(directory, table, len(points) - len(pending))


def _resumed_rows(directory: SweepDirectory, points: list[SweepPoint]) -> dict[str, PointRow]:
    rows = {}
    for point in points:
        found = finished_point(directory, point)
        if found is not None:
            rows[point.name] = PointRow(point, None, found[0], found[1])
    return rows


def _check_pending(directory: SweepDirectory, pending: list[SweepPoint], base_dir: Path) -> None:
    """Check each point's results directory, then prepare every point still to run."""
    for point in pending:
        resolve_target(directory.point_dir(point.name))
    check_points(pending, base_dir)


def check_points(points: list[SweepPoint], base_dir: Path) -> None:
    """Prepare every point (catalogs, plan, memory, workload): all problems at once, before anything runs."""
    from servesim.sim.runner import prepare

    problems = []
    for point in points:
        try:
            prepare(point.config, base_dir)
        except ConfigError as exc:
            problems.append(f"{point.name} ({point.label}): {exc}")
    if problems:
        raise ConfigError(f"{len(problems)} of the sweep's points cannot run; nothing was run:\n" + "\n".join(problems))


def _record(directory: SweepDirectory, point: SweepPoint, outcome: PointOutcome) -> PointRow:
    """Write a successful point's directory; the table's row either way."""
    if outcome.ok:
        write_point(directory, point, outcome)
    offered = outcome.offered_requests_per_s
    return PointRow(point, outcome.error, outcome.summary, offered if math.isfinite(offered) else math.nan)


__all__ = ["SweepProgress", "SweepReport", "check_points", "run_sweep"]

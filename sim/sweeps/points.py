"""Running one point: the unit of work of a sweep and of a goodput search, on any backend.

`run_point` is a top-level function of plain, picklable data so that a spawned process or a Ray
worker can run it. It never raises for a point that fails: the error is returned as text and the
sweep goes on. The results directory's files come back as bytes, so that only the caller writes
to disk (through the same safe path as `simrun run`), and a Ray worker on another node needs no
shared filesystem for its output.
"""
from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servesim.sim.experiment.config import ExperimentConfig
from servesim.sim.reporting.progress import QUIET, ProgressOptions


@dataclass(frozen=True)
class PointTask:
    """One point to run: its name, its validated config, and where relative paths start."""

    name: str
    config: ExperimentConfig
    base_dir: str
    files: bool = True
    """Return the results directory's files (a goodput probe needs only the summary)."""


@dataclass
class PointOutcome:
    """What a point produced: a summary and its files, or the error that stopped it."""

    name: str
    error: str | None = None
    summary: dict[str, Any] | None = None
    offered_requests_per_s: float = math.nan
    files: dict[str, bytes] = field(default_factory=dict)
    user_error: bool = False
    """The error is the input's (a config, trace or catalog problem), not servesim's or a plug-in's."""

    @property
    def ok(self) -> bool:
        return self.error is None


def run_point(task: PointTask, progress: ProgressOptions = QUIET, label: str = "") -> PointOutcome:
    """Prepare, simulate and (if asked) render the results files of one point.

    `progress` shows the simulation's own progress (a goodput probe run in this process); a sweep's
    workers leave it off and the sweep reports progress over points instead.
    """
    from servesim.sim.reporting.results import write_run_files
    from servesim.sim.runner import prepare, run_extent, simulate

    try:
        prepared = prepare(task.config, Path(task.base_dir))
        with progress.reporter(run_extent(prepared), label) as callback:
            result = simulate(prepared, callback)
        files: dict[str, bytes] = {}
        if task.files:
            with tempfile.TemporaryDirectory(prefix="servesim-point-") as scratch:
                write_run_files(result, Path(scratch), task.config.output.plots)
                files = {p.relative_to(scratch).as_posix(): p.read_bytes()
                         for p in sorted(Path(scratch).rglob("*")) if p.is_file()}
        offered = offered_rate(len(prepared.workload), prepared.workload.last_arrival_s)
        return PointOutcome(task.name, None, result.summary, offered, files)
    except Exception as exc:  # a failing point is recorded with its error; the others go on
        return PointOutcome(task.name, error=describe_error(exc), user_error=is_user_error(exc))


def offered_rate(num_requests: int, last_arrival_s: float) -> float:
    """Requests per second offered: arrivals over the span to the last one (infinite if all arrive at 0)."""
    return num_requests / last_arrival_s if last_arrival_s > 0 else math.inf


def is_user_error(exc: BaseException) -> bool:
    from servesim.sim.cli import USER_ERRORS

    return isinstance(exc, USER_ERRORS)


def describe_error(exc: BaseException) -> str:
    """A user error's own paragraph; anything else (a broken invariant, a plug-in's bug) with its type."""
    if is_user_error(exc):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"

"""A run split among worker processes: routed once, simulated in shares, merged into one result.

Merged tables are in the whole run's order where that order is defined by the run itself:
`requests.parquet` by request id, `iterations.parquet` by (start, replica). Rows at the same
simulated time on different replicas follow the event order of a single process, which the
workers cannot see; there the merged order is defined instead: `replica_series.parquet` by
(time, replica), and `system_series.parquet` has one row per time (README, "Parallel runs").
"""
from __future__ import annotations

import shutil
import tempfile
import time
import warnings
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from servesim.sim.parallel.independence import coupling_reasons
from servesim.sim.parallel.merge import merge_sorted, merge_system_series
from servesim.sim.parallel.routing import route_workload
from servesim.sim.parallel.workers import ShareOutcome, ShareTask, run_workers
from servesim.sim.reporting.gap_store import GapStore
from servesim.sim.reporting.results import RunFiles, RunResult
from servesim.sim.reporting.spill import read_table
from servesim.sim.sweeps.backends import default_jobs

if TYPE_CHECKING:
    from servesim.sim.runner import PreparedRun


class SerialRunWarning(UserWarning):
    """`simulation.workers` asked for processes, but the replicas interact: the run uses one."""


def workers_to_use(prepared: PreparedRun) -> int:
    """Processes for this run: `simulation.workers` (`auto`: one per CPU), at most one per replica,
    and 1 when the replicas interact (which an explicit number above 1 is told, once)."""
    asked = prepared.config.simulation.workers
    workers = default_jobs() if asked == "auto" else asked
    if workers <= 1:
        return 1
    reasons = coupling_reasons(prepared)
    if reasons:
        if asked != "auto":
            warnings.warn(SerialRunWarning(f"simulation.workers: {asked} asked, the run uses one process as its "
                                           f"replicas interact: {'; '.join(reasons)}"), stacklevel=3)
        return 1
    return min(workers, prepared.config.cluster.replicas)


class _Scratch:
    """A temporary folder for the merged tables, removed when the run's result lets go of it."""

    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="servesim-parallel-"))
        weakref.finalize(self, shutil.rmtree, self.path, ignore_errors=True)


def simulate_in_parallel(prepared: PreparedRun, workers: int,
                         progress: Callable[[int, float], None] | None = None) -> RunResult:
    """The run simulated by `workers` processes, each with a share of the replicas; its results are
    the single-process run's (see the module's docstring for the order of merged tables)."""
    from servesim.sim.runner import run_summary

    started = time.perf_counter()
    config = prepared.config
    scratch = _Scratch()
    tasks = []
    for index, replica_ids in enumerate(np.array_split(np.arange(config.cluster.replicas), workers)):
        directory = scratch.path / f"worker{index}"
        directory.mkdir()
        tasks.append(ShareTask(index, config, prepared.base_dir, tuple(int(i) for i in replica_ids), directory,
                               progress is not None))
    outcomes = run_workers(tasks, lambda: route_workload(prepared), progress)
    files = _merged(outcomes, scratch, config.output.iterations)
    for task in tasks:
        shutil.rmtree(task.directory)
    engine = {key: sum(outcome.engine[key] for outcome in outcomes) for key in outcomes[0].engine}
    summary = run_summary(prepared, read_table(files.requests), files, max(o.sim_time_s for o in outcomes), engine,
                          any(o.prefix_caching for o in outcomes), config.cluster.replicas, started)
    return RunResult(config, summary, files)


def _merged(outcomes: Sequence[ShareOutcome], scratch: _Scratch, iterations: bool) -> RunFiles:
    """The workers' tables as the run's, in `scratch`; their token gaps pooled, worker after worker."""
    folder = scratch.path
    gaps = GapStore(folder)
    for outcome in outcomes:
        gaps.extend_from(outcome.requests.parent)
    iterations_path = None
    if iterations:
        iterations_path = merge_sorted([o.iterations for o in outcomes if o.iterations is not None],
                                       folder / "iterations.parquet", "start_s", ("replica",))
    return RunFiles(
        merge_sorted([o.requests for o in outcomes], folder / "requests.parquet", "request_id"),
        merge_sorted([o.replica_series for o in outcomes], folder / "replica_series.parquet", "time_s",
                     ("replica",)),
        merge_system_series([o.system_series for o in outcomes], folder / "system_series.parquet"),
        gaps, iterations_path, keep_alive=scratch,
    )

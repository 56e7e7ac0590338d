"""One timed simulation and the figures every speed benchmark prints, in one format."""
from __future__ import annotations

import resource
import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MeasuredRun:
    summary: dict[str, Any]
    sim_wall_s: float
    sim_cpu_s: float
    total_wall_s: float
    """Since the benchmark's process started (imports included)."""
    peak_mb: float
    workers: int = 1
    children_cpu_s: float = 0.0
    """CPU seconds of the worker processes of a parallel run (`simulation.workers`)."""
    children_peak_mb: float = 0.0
    """The largest worker's peak resident memory."""


def measure(config: Any, process_start: float) -> MeasuredRun:
    """Prepare and simulate a validated config, timing the simulation's wall and CPU seconds."""
    from servesim.sim.runner import prepare, simulate

    sim_start, cpu_start, children_start = time.perf_counter(), time.process_time(), _children_cpu_s()
    result = simulate(prepare(config))
    sim_wall = time.perf_counter() - sim_start
    sim_cpu = time.process_time() - cpu_start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    workers = config.simulation.workers
    return MeasuredRun(result.summary, sim_wall, sim_cpu, time.perf_counter() - process_start, peak_mb,
                       workers if isinstance(workers, int) else 0, _children_cpu_s() - children_start,
                       children.ru_maxrss / 1024)


def _children_cpu_s() -> float:
    """User and system CPU seconds of the ended child processes (the workers of a parallel run)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return children.ru_utime + children.ru_stime


def print_figures(run: MeasuredRun, ratio: str) -> None:
    """Requests, simulated time, iterations, the engine's build, wall (with `ratio` to a previous figure), CPU,
    rates, memory."""
    from servesim.sim.engine import engine_build

    summary = run.summary
    iterations = summary["engine"]["iterations"]
    print(f"requests finished       {summary['num_finished']:,} of {summary['num_requests']:,} "
          f"({summary['num_preemptions']:,} preemptions)")
    print(f"simulated time          {summary['sim_time_s']:,.1f} s")
    print(f"iterations              {iterations:,} in {summary['engine']['engine_steps']:,} engine steps")
    print(f"engine build            {engine_build()} (setup.py)")
    print(f"wall, simulation        {run.sim_wall_s:.2f} s ({ratio})")
    print(f"wall, whole process     {run.total_wall_s:.2f} s (imports included)")
    if run.workers != 1:
        print(f"workers                 {run.workers or 'auto'} processes (simulation.workers)")
        print(f"cpu, all processes      {run.sim_cpu_s + run.children_cpu_s:.2f} s ({run.sim_cpu_s:.2f} s this "
              f"process, {run.children_cpu_s:.2f} s the workers)")
    else:
        print(f"cpu, simulation         {run.sim_cpu_s:.2f} s (steadier than wall time on a busy machine)")
    print(f"requests per wall s     {summary['num_requests'] / run.sim_wall_s:,.0f}")
    print(f"iterations per wall s   {iterations / run.sim_wall_s:,.0f}")
    if run.workers != 1:
        print(f"peak memory (max RSS)   {run.peak_mb:,.0f} MB this process, {run.children_peak_mb:,.0f} MB the "
              "largest worker", flush=True)
    else:
        print(f"peak memory (max RSS)   {run.peak_mb:,.0f} MB", flush=True)

"""Worker processes: each prepares the run again, simulates its share, and reports back.

Processes are spawned (no state inherited from a fork: safe with threads and notebooks). They
start first and prepare the run while the parent routes the workload, then each receives every
request's replica. A worker writes its tables into a folder the parent owns and sends back only
small things: its progress now and then, and at the end its counts or its error. A worker that dies without a
word (killed, out of memory) stops the run with an error naming it.
"""
from __future__ import annotations

import multiprocessing
import os
import pickle
import queue
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from servesim.sim.errors import EngineInvariantError
from servesim.sim.experiment.config import ExperimentConfig

PROGRESS_EVERY_S = 0.25
"""Wall seconds between two progress messages of a worker."""
POLL_S = 1.0
"""How long the parent waits for a message before it checks that every worker is still alive."""


@dataclass(frozen=True)
class ShareTask:
    """What a worker needs besides every request's replica (sent once routed): the config (prepared
    again in the worker), its replicas, and the folder its tables go to."""

    index: int
    config: ExperimentConfig
    base_dir: Path
    replica_ids: tuple[int, ...]
    directory: Path
    report_progress: bool


@dataclass(frozen=True)
class ShareOutcome:
    """A worker's results: its tables (in its folder), and what the summary reads off its engine."""

    index: int
    num_requests: int
    sim_time_s: float
    engine: dict[str, Any]
    prefix_caching: bool
    requests: Path
    replica_series: Path
    system_series: Path
    iterations: Path | None


def simulate_share(task: ShareTask, inbox: Any, messages: Any) -> None:
    """A worker process's body: the run prepared, every request's replica taken from `inbox`, its
    share simulated, the outcome (or the error) sent to the parent; then the process ends at once.

    Its tables are closed and its message flushed by then, so nothing is lost by skipping the
    interpreter's teardown (freeing every object and module: a few tenths of a second that the
    parent, which waits for its workers to end, would wait too)."""
    try:
        messages.put(("done", task.index, simulate_prepared_share(task, inbox.get, messages)))
    except BaseException as exc:  # the parent re-raises it; a worker must never die silently
        messages.put(("failed", task.index, _sendable(exc)))
    messages.close()
    messages.join_thread()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def simulate_prepared_share(task: ShareTask, destinations: Callable[[], np.ndarray], messages: Any
                            ) -> ShareOutcome:
    """A share simulated here: `destinations()` gives every request's replica once the run is prepared."""
    from servesim.sim.runner import Share, engine_counts, prepare, run_engine

    prepared = prepare(task.config, task.base_dir)
    share = Share(task.replica_ids, destinations(), task.directory)
    engine = run_engine(prepared, _progress_sender(task.index, messages) if task.report_progress else None, share)
    files = engine.files
    return ShareOutcome(task.index, engine.num_requests, engine.sim_time_s, engine_counts(engine.replicas),
                        any(r.kv.caches_prefixes for r in engine.replicas), files.requests, files.replica_series,
                        files.system_series, files.iterations)


def _progress_sender(index: int, messages: Any) -> Callable[[int, float], None]:
    due = time.monotonic() + PROGRESS_EVERY_S

    def progress(num_done: int, now: float) -> None:
        nonlocal due
        tick = time.monotonic()
        if tick >= due:
            due = tick + PROGRESS_EVERY_S
            messages.put(("progress", index, (num_done, now)))

    return progress


def _sendable(exc: BaseException) -> BaseException:
    """`exc` itself if it survives pickling (the parent raises the same error), else its text."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return EngineInvariantError(f"{type(exc).__name__}: {exc}")
    return exc


def run_workers(tasks: Sequence[ShareTask], route: Callable[[], np.ndarray],
                progress: Callable[[int, float], None] | None) -> list[ShareOutcome]:
    """Run every task in its own process, routing the workload (`route()`) while they start; their
    outcomes in task order. Progress is the sum of requests done and the least simulated time of
    the workers still running (the run's time)."""
    context = multiprocessing.get_context("spawn")
    messages = context.Queue()
    inboxes = [context.Queue() for _ in tasks]
    for inbox in inboxes:  # a worker that failed before reading its inbox must not keep this process from exiting
        inbox.cancel_join_thread()
    processes = [context.Process(target=simulate_share, args=(task, inbox, messages),
                                 name=f"servesim-worker-{task.index}", daemon=True)
                 for task, inbox in zip(tasks, inboxes, strict=True)]
    outcomes: dict[int, ShareOutcome] = {}
    done = [0] * len(tasks)
    now = [0.0] * len(tasks)
    try:
        for process in processes:
            process.start()
        destinations = route()
        for inbox in inboxes:
            inbox.put(destinations)
        while len(outcomes) < len(tasks):
            try:
                kind, index, payload = messages.get(timeout=POLL_S)
            except queue.Empty:
                if _any_ended(processes, outcomes):  # its last words may still be in the pipe
                    kind, index, payload = _last_words(messages, processes, outcomes)
                else:
                    continue
            if kind == "failed":
                raise payload
            if kind == "done":
                outcomes[index] = payload
                done[index], now[index] = payload.num_requests, payload.sim_time_s
            else:
                done[index], now[index] = payload
            if progress is not None:
                running = [now[i] for i in range(len(tasks)) if i not in outcomes]
                progress(sum(done), min(running) if running else max(now))
    finally:
        for process in processes:
            if process.pid is None:  # never started
                continue
            if process.is_alive() and len(outcomes) < len(tasks):
                process.terminate()
            process.join()
    return [outcomes[task.index] for task in tasks]


def _any_ended(processes: Sequence[Any], outcomes: dict[int, ShareOutcome]) -> bool:
    return any(index not in outcomes and not process.is_alive() for index, process in enumerate(processes))


def _last_words(messages: Any, processes: Sequence[Any], outcomes: dict[int, ShareOutcome]) -> tuple[str, int, Any]:
    """The next message, which a worker that ended must have sent; else an error naming it."""
    try:
        return messages.get(timeout=POLL_S)
    except queue.Empty:
        index = next(i for i, process in enumerate(processes) if i not in outcomes and not process.is_alive())
        raise EngineInvariantError(
            f"worker process {index} of the parallel run ended (exit code {processes[index].exitcode}) without its "
            "results: killed, out of memory, or it could not start (its error is above; a Python script that "
            "starts a parallel run must guard its top level with `if __name__ == \"__main__\":`, as spawned "
            "processes import it)") from None

"""Where points run: in this process, in local worker processes, or on a Ray cluster.

Each backend yields outcomes as points finish (not in submission order). On Ctrl-C it cancels
what has not started and re-raises, so the caller keeps what finished. Ray is imported only
when asked for: servesim and `simrun` never need it.
"""
from __future__ import annotations

import functools
import multiprocessing
import os
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, Literal, Protocol, TypeVar

from servesim.sim.errors import UserInputError
from servesim.sim.sweeps.points import PointOutcome, PointTask, describe_error, run_point

Backend = Literal["local", "ray"]
BACKENDS: tuple[Backend, ...] = ("local", "ray")


class NamedTask(Protocol):
    @property
    def name(self) -> str: ...


TaskT = TypeVar("TaskT", bound=NamedTask)
OutcomeT = TypeVar("OutcomeT")
Crashed = Callable[[str, str], OutcomeT]
"""The outcome of a task whose worker died (killed, out of memory), from its name and the error."""


def default_jobs() -> int:
    """Worker processes by default: one per CPU this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def check_options(backend: Backend, jobs: int | None, address: str | None) -> None:
    """Refuse options that contradict each other, before anything is written or run."""
    if backend not in BACKENDS:
        raise UserInputError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if address is not None and backend != "ray":
        raise UserInputError("--address names a Ray cluster; it needs --backend ray")
    if jobs is not None and jobs < 1:
        raise UserInputError(f"--jobs must be at least 1, got {jobs}")
    if jobs is not None and backend == "ray":
        raise UserInputError("--jobs sets local worker processes; with --backend ray the cluster's CPUs decide")


def run_tasks(tasks: Sequence[PointTask], backend: Backend = "local", jobs: int | None = None,
              address: str | None = None) -> Generator[PointOutcome, None, None]:
    """Run every sweep point and yield each outcome as it finishes."""
    yield from run_work(tasks, run_point, _crashed_point, backend, jobs, address)


def run_work(tasks: Sequence[TaskT], work: Callable[[TaskT], OutcomeT], crashed: Crashed[OutcomeT],
             backend: Backend = "local", jobs: int | None = None,
             address: str | None = None) -> Generator[OutcomeT, None, None]:
    """Run `work` (a picklable top-level function) on every task; yield each outcome as it finishes."""
    check_options(backend, jobs, address)
    if not tasks:
        return
    if backend == "ray":
        yield from _run_on_ray(tasks, work, crashed, address)
        return
    jobs = default_jobs() if jobs is None else jobs
    if jobs == 1 or len(tasks) <= 1:
        for task in tasks:
            yield work(task)
        return
    yield from _run_in_processes(tasks, work, crashed, min(jobs, len(tasks)))


def _run_in_processes(tasks: Sequence[TaskT], work: Callable[[TaskT], OutcomeT], crashed: Crashed[OutcomeT],
                      jobs: int) -> Iterator[OutcomeT]:
    """A pool of spawned processes (no state inherited from a fork: safe with threads and notebooks)."""
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))
    finished = False
    try:
        names = {pool.submit(work, task): task.name for task in tasks}
        pending = set(names)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield _outcome(names[future], future.result, crashed)
        finished = True
    finally:
        pool.shutdown(wait=finished, cancel_futures=True)
        if not finished:
            _stop_workers(pool)


def _crashed_point(name: str, error: str) -> PointOutcome:
    return PointOutcome(name, error=error)


def _outcome(name: str, get: Callable[[], OutcomeT], crashed: Crashed[OutcomeT]) -> OutcomeT:
    """The task's outcome, or its failure when the worker itself died (killed, out of memory)."""
    try:
        return get()
    except Exception as exc:
        return crashed(name, describe_error(exc))


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Interrupted: end the points still running rather than wait for them."""
    terminate = getattr(pool, "terminate_workers", None)  # Python 3.14+
    if terminate is not None:
        terminate()
        return
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.terminate()


def _run_on_ray(tasks: Sequence[TaskT], work: Callable[[TaskT], OutcomeT], crashed: Crashed[OutcomeT],
                address: str | None) -> Iterator[OutcomeT]:
    """One Ray task per task; connects to `address` (or RAY_ADDRESS, or starts a local instance)."""
    ray = _import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        except ConnectionError as exc:
            raise UserInputError(f"cannot connect to the Ray cluster at {address!r} ({exc}); check --address "
                                 f"(e.g. ray://head:10001 or auto) and that the cluster is up") from None
    remote = ray.remote(num_cpus=1)(work)
    names = {remote.remote(task): task.name for task in tasks}
    pending: list[Any] = list(names)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                yield _outcome(names[ref], functools.partial(ray.get, ref), crashed)
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        if started_here:
            ray.shutdown()


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserInputError("the ray backend needs Ray, which is not installed: pip install 'servesim[ray]' "
                             "(or use the default --backend local)") from None
    return ray

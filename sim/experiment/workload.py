"""Turns the `workload` section into the list of requests to serve, via the traces package."""
from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from servesim.sim.engine.request import Request
from servesim.sim.errors import ConfigError
from servesim.sim.experiment.classes import DEFAULT_CLASS, ServiceClass, assign_classes
from servesim.sim.experiment.config import TraceConfig, WorkloadConfig
from servesim.traces import (
    TraceError,
    chunked,
    load_trace,
    sample_path,
    scale_rate,
    take,
    time_window,
)
from servesim.traces.chunked import scan_trace
from servesim.traces.prefixes import SharedPrefixes
from servesim.traces.synthetic import ArrivalStream, length_pair_sampler, length_sampler
from servesim.traces.transforms import window_rows

THINK_TIME_CHUNK = 4096
"""Closed-loop pauses drawn at once, as clients need them."""
MAX_ARRIVAL_S = 1e9  # about 32 years: float64 seconds still resolve well below a microsecond


@dataclass(frozen=True)
class Workload:
    """The requests of a run: what must be known before it starts, and its rows, chunk by chunk.

    A trace file (`servesim.traces.chunked`) is read again, and a synthetic workload drawn again
    from its seed, on every pass over the rows, so a run holds one chunk of rows at a time.
    """

    num_requests: int
    last_arrival_s: float
    class_names: tuple[str, ...] | None
    """The `slo_class` values of the rows, sorted (None: the rows have no `slo_class`)."""
    read_chunks: Callable[[], Iterator[pd.DataFrame]] = field(repr=False)

    def __len__(self) -> int:
        return self.num_requests

    def chunks(self) -> Iterator[pd.DataFrame]:
        """The canonical rows in arrival order, with their classes, a table at a time."""
        return self.read_chunks()

    def table(self) -> pd.DataFrame:
        """Every row in one table: for small workloads (validate-real, notebooks, tests), not for a run."""
        return pd.concat(list(self.chunks()), ignore_index=True)

    @classmethod
    def of_chunks(cls, read_chunks: Callable[[], Iterator[pd.DataFrame]]) -> Workload:
        """Read the chunks once to learn the facts; an empty workload or one arriving too late is an error."""
        num_requests, last_arrival_s, has_classes = 0, 0.0, False
        names: set[str] = set()
        for chunk in read_chunks():
            num_requests += len(chunk)
            last_arrival_s = float(chunk["arrival_s"].iloc[-1])
            if "slo_class" in chunk:
                has_classes = True
                names.update(chunk["slo_class"])
        if num_requests == 0:
            raise TraceError("the workload has no requests")
        _check_last_arrival(last_arrival_s)
        return cls(num_requests, last_arrival_s, tuple(sorted(names)) if has_classes else None, read_chunks)


def build_workload(workload: WorkloadConfig, base_dir: Path, rng_seed: int, max_model_len: int,
                   class_rng: Callable[[], np.random.Generator]) -> Workload:
    """The experiment's requests: the canonical rows (arrival_s, prompt_tokens, ...) with their classes.

    `class_rng` makes the class assignment's random stream afresh for every pass over the rows.
    Raises TraceError (or ConfigError for classes) before any row is simulated.
    """
    prefix = workload.shared_prefix
    if prefix is not None and prefix.tokens >= max_model_len:
        raise TraceError(
            f"shared_prefix.tokens: {prefix.tokens:,} tokens leave no room for a prompt within max_model_len "
            f"({max_model_len:,}); every request with the prefix would be rejected. Use fewer tokens."
        )
    trace = workload.trace
    if trace is None:
        def read() -> Iterable[pd.DataFrame]:
            return _synthetic_chunks(workload, base_dir, rng_seed)
    else:
        source = scan_trace(_trace_path(trace, base_dir), trace.format, **_trace_options(trace))
        assert source is not None  # the config gives a format only the options it knows
        read = partial(iter, source)
    try:
        return Workload.of_chunks(lambda: _rows(read(), workload, class_rng()))
    except (TraceError, ConfigError):
        assign_classes(build_table(workload, base_dir, rng_seed), workload, class_rng())  # the exact message
        raise


def build_table(workload: WorkloadConfig, base_dir: Path, rng_seed: int) -> pd.DataFrame:
    """The canonical trace table of the experiment (arrival_s, prompt_tokens, output_tokens, ...), whole."""
    if workload.trace is not None:
        trace = workload.trace
        table = load_trace(_trace_path(trace, base_dir), trace.format, **_trace_options(trace))
        if workload.start_s > 0 or workload.end_s is not None:
            table = time_window(table, workload.start_s, workload.end_s)
        if workload.num_requests is not None:
            table = take(table, workload.num_requests)
    else:
        table = pd.concat(list(_synthetic_chunks(workload, base_dir, rng_seed)))
    if workload.rate_scale != 1.0:
        table = scale_rate(table, workload.rate_scale)
    _check_last_arrival(float(table["arrival_s"].iloc[-1]))
    return table.reset_index(drop=True)


def _rows(source: Iterable[pd.DataFrame], workload: WorkloadConfig, class_rng: np.random.Generator
          ) -> Iterator[pd.DataFrame]:
    """`build_table`'s transformations, applied chunk by chunk: each is row by row or a running count."""
    is_trace = workload.trace is not None
    remaining = workload.num_requests if is_trace else None
    windowed = is_trace and (workload.start_s > 0 or workload.end_s is not None)
    for chunk in source:
        if windowed:
            chunk = window_rows(chunk, workload.start_s, workload.end_s)
        if remaining is not None:
            chunk = chunk.head(remaining)
            remaining -= len(chunk)
        if workload.rate_scale != 1.0:
            chunk = scale_rate(chunk, workload.rate_scale)
        if len(chunk):
            yield assign_classes(chunk.reset_index(drop=True), workload, class_rng)
        if remaining == 0:
            return


def _check_last_arrival(last: float) -> None:
    if last > MAX_ARRIVAL_S:
        raise TraceError(
            f"the last request arrives at {last:.3g} s, later than the {MAX_ARRIVAL_S:.0e} s servesim simulates "
            "(beyond it float seconds lose the microseconds an iteration takes); raise the arrival rate or "
            "workload.rate_scale, or cut the trace with workload.end_s"
        )


def _trace_path(trace: TraceConfig, base_dir: Path) -> Path:
    return sample_path(trace.sample) if trace.sample else _resolve(base_dir, trace.path)


def _trace_options(trace: TraceConfig) -> dict[str, Any]:
    return {"arrival_unit": trace.arrival_unit} if trace.arrival_unit else {}


def _synthetic_chunks(workload: WorkloadConfig, base_dir: Path, rng_seed: int) -> Iterator[pd.DataFrame]:
    """The synthetic requests, CHUNK_ROWS at a time, drawn from the seed's streams afresh on every call.

    Each stream gives the values one draw of the whole workload would give (`ArrivalStream`,
    `length_sampler`, `SharedPrefixes`), so the rows do not depend on the chunk size.
    """
    arrival_rng, prompt_rng, output_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(rng_seed).spawn(3)
    )
    n = workload.num_requests
    assert n is not None
    arrival = workload.arrival
    arrivals = None if arrival is None else ArrivalStream(arrival.process, arrival.rate, arrival_rng, cv=arrival.cv)
    prompt_spec = _resolve_spec(workload.prompt_tokens, base_dir)
    output_spec = _resolve_spec(workload.output_tokens, base_dir)
    joint_path = _joint_empirical_path(prompt_spec, output_spec)
    if joint_path is not None:
        pairs = length_pair_sampler(joint_path)
    else:
        prompts = length_sampler(prompt_spec, origin="workload.prompt_tokens")
        outputs = length_sampler(output_spec, origin="workload.output_tokens")
    prefix = workload.shared_prefix
    prefixes = None
    if prefix is not None:
        prefix_rng = np.random.default_rng(np.random.SeedSequence(rng_seed, spawn_key=(6,)))
        prefixes = SharedPrefixes(prefix.num_groups, prefix.tokens, prefix.share, prefix_rng, n)
    for first in range(0, n, chunked.CHUNK_ROWS):
        size = min(chunked.CHUNK_ROWS, n - first)
        # closed-loop clients (no arrival): the cluster sets each arrival when the request is sent
        times = np.zeros(size) if arrivals is None else arrivals.draw(size)
        if joint_path is not None:
            prompt_lengths, output_lengths = pairs(prompt_rng, size)
        else:
            prompt_lengths, output_lengths = prompts(prompt_rng, size), outputs(output_rng, size)
        table = pd.DataFrame({"arrival_s": times, "prompt_tokens": prompt_lengths, "output_tokens": output_lengths},
                             index=pd.RangeIndex(first, first + size))
        yield table if prefixes is None else prefixes.add(table)


def _resolve(base_dir: Path, path: str | None) -> Path:
    assert path is not None
    candidate = Path(path)
    return candidate if candidate.is_absolute() else base_dir / candidate


def _resolve_spec(spec: dict[str, Any] | None, base_dir: Path) -> dict[str, Any]:
    """Point `path` at the config's folder and `sample` at the bundled file."""
    resolved = dict(spec or {})
    if "sample" in resolved:
        resolved["path"] = str(sample_path(resolved.pop("sample")))
    elif isinstance(resolved.get("path"), str):
        resolved["path"] = str(_resolve(base_dir, resolved["path"]))
    return resolved


def _joint_empirical_path(prompt: dict[str, Any], output: dict[str, Any]) -> str | None:
    """Both lengths from the same length table with no column named: sample its rows jointly."""
    for spec in (prompt, output):
        if spec.get("dist") != "empirical" or "column" in spec or "path" not in spec:
            return None
    return prompt["path"] if prompt["path"] == output["path"] else None


REQUEST_CHUNK_ROWS = 4096
"""Workload rows turned into Python values at a time while requests are made."""


def request_stream(chunks: Iterable[pd.DataFrame], classes: Mapping[str, ServiceClass]) -> Iterator[Request]:
    """One Request per row, ids in arrival order, with its class's deadline and timeout, each made
    only when the cluster asks for it: requests that have not arrived yet cost no memory."""
    first_id = 0
    for table in chunks:
        for start in range(0, len(table), REQUEST_CHUNK_ROWS):
            yield from _chunk_requests(table.iloc[start:start + REQUEST_CHUNK_ROWS], first_id + start, classes)
        first_id += len(table)


def _chunk_requests(table: pd.DataFrame, first_id: int, classes: Mapping[str, ServiceClass]) -> Iterator[Request]:
    column = {name: table[name].tolist() if name in table else None
              for name in ("priority", "slo_class", "session_id", "prefix_hashes", "prefix_block_tokens")}
    arrivals = table["arrival_s"].to_numpy(dtype=float).tolist()
    prompts = table["prompt_tokens"].to_numpy(dtype=np.int64).tolist()
    outputs = table["output_tokens"].to_numpy(dtype=np.int64).tolist()
    class_names, priorities, sessions = column["slo_class"], column["priority"], column["session_id"]
    hashes, block_tokens = column["prefix_hashes"], column["prefix_block_tokens"]
    # without a class column every request is of the default class: looked up once, not per row
    service = classes[DEFAULT_CLASS] if class_names is None and arrivals else None
    for i, (arrival, prompt, output) in enumerate(zip(arrivals, prompts, outputs, strict=True)):
        request = Request(first_id + i, arrival, prompt, output)
        if class_names is not None:
            request.slo_class = str(class_names[i])
            service = classes[request.slo_class]
        assert service is not None
        request.priority = int(priorities[i]) if priorities is not None else service.priority
        if service.ttft_s is not None:
            request.ttft_deadline_s = arrival + service.ttft_s
        if service.timeout_s is not None:
            request.timeout_at_s = arrival + service.timeout_s
        if sessions is not None:
            request.session_id = sessions[i]
        if hashes is not None and block_tokens is not None:
            request.prefix_hashes = tuple(hashes[i])
            request.prefix_block_tokens = int(block_tokens[i])
        yield request


def think_times(workload: WorkloadConfig, rng: np.random.Generator, chunk: int | None = None) -> Iterator[float]:
    """Closed loop: the pause before each request after the first `concurrency` is sent, in
    workload order, drawn `chunk` (default THINK_TIME_CHUNK) at a time as clients ask for them,
    so memory does not grow with the run. Request i waits the i-th value of the seed's stream,
    as when every pause was drawn at once: NumPy draws each value in turn however many are asked
    for, and the first `concurrency` values are drawn and skipped (those requests go out at 0)."""
    clients = workload.clients
    assert clients is not None
    if clients.think_time == "exponential" and clients.think_time_s > 0:
        return _exponential_pauses(rng, clients.think_time_s, clients.concurrency, chunk or THINK_TIME_CHUNK)
    return itertools.repeat(float(clients.think_time_s))


def _exponential_pauses(rng: np.random.Generator, mean_s: float, skip: int, chunk: int) -> Iterator[float]:
    drawn = 0
    while True:
        values = rng.exponential(mean_s, chunk)
        first = min(max(skip - drawn, 0), chunk)
        drawn += chunk
        yield from values[first:].tolist()

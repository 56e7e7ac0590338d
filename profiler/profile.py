"""`simrun profile`: time every operator of a model on a device and write a cost-table directory.

For each tensor-parallel degree the sharded shapes run on this one device (as Vidur does); the
per-token operators over token counts, the LM head and sampling over sampled entries,
attention over (new tokens, context) and (decodes, context), KV block copy and host swap over
bytes, and collectives over message sizes when several GPUs are present. Last, the reference
engine serves a small calibration workload and its measured iteration times, less what the
fresh tables predict for the same batches, give `cpu_overhead`: the scheduling and Python
time of an iteration that no kernel timing sees.
"""
from __future__ import annotations

import datetime
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from servesim.hwmodels import BatchShape, ParallelPlan, load_hardware, load_model
from servesim.hwmodels.model_spec import ModelSpec
from servesim.hwmodels.tables import TableCostModel, TableSet, write_tables
from servesim.hwmodels.tables.schema import COLUMNS, OVERHEAD_OPERATOR, PREFILL_OVERHEAD_OPERATOR
from servesim.profiler.grids import Grid, grid_for
from servesim.profiler.measure import OperatorBench
from servesim.profiler.timing import DTYPES, Timer, device_info

ENTRY_OPERATORS = ("lm_head", "sampling")
CALIBRATION_REQUESTS = 32


@dataclass(frozen=True)
class ProfileRequest:
    """What to profile: a catalog model on `device` ('cpu' or 'cuda') at some TP degrees."""

    model: str
    device: str
    tp: tuple[int, ...] = (1,)
    quick: bool = False
    hardware: str | None = None
    dtype: str | None = None
    threads: int | None = None
    seed: int = 0


def hardware_for(device: torch.device, name: str | None) -> str:
    """The hardware catalog entry of `device`: given, `cpu`, or recognised from the GPU's name."""
    if name:
        return load_hardware(name).name
    if device.type == "cpu":
        return "cpu"
    gpu = torch.cuda.get_device_name(device).lower()
    for needle, entry in (("h200", "h200"), ("h100", "h100-sxm"), ("a100", "a100-80g"), ("b200", "b200"),
                          ("l40s", "l40s"), ("mi300x", "mi300x")):
        if needle in gpu:
            return entry
    raise ValueError(f"GPU {gpu!r} has no hardware catalog entry I recognise; pass --hardware NAME")


def setup_device(device_name: str, threads: int | None) -> torch.device:
    """The torch device, with a fixed CPU thread count (default 1) so profile and engine agree."""
    if device_name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: torch sees no CUDA device here (use --device cpu)")
    if device_name not in ("cpu", "cuda"):
        raise ValueError(f"--device must be cpu or cuda, got {device_name!r}")
    if device_name == "cpu":
        torch.set_num_threads(threads or 1)
        # oneDNN keeps 1,024 GEMM kernels by default, fewer than the shapes of a token budget;
        # evicted ones are rebuilt at a cost larger than a small GEMM. Read on first use.
        os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "16384")
    return torch.device(device_name)


def profile(request: ProfileRequest, out_dir: Path, progress: bool = True) -> Path:
    """Measure everything, calibrate the overhead, and write `out_dir` (ops.parquet + metadata.json)."""
    device = setup_device(request.device, request.threads)
    spec = load_model(request.model)
    hardware = hardware_for(device, request.hardware)
    dtype_name = request.dtype or spec.activation_dtype
    dtype = DTYPES[dtype_name]
    grid = grid_for(device.type, spec.max_position_embeddings, request.quick)
    timer = Timer(device, warmup=1 if request.quick else 3, repeats=3 if request.quick else 10)
    tasks = list(_tasks(spec, request.tp, grid, dtype, timer, request.seed))
    rows = []
    bar = tqdm(tasks, desc=f"profiling {spec.name} on {device.type}", unit="shape", disable=not progress)
    for describe, measure in bar:
        rows.append({**describe, "time_s": measure()})
    frame = _frame(rows, dtype_name)
    frame = pd.concat([frame, _collective_rows(grid, dtype, dtype_name)])
    metadata: dict[str, Any] = {
        "hardware": hardware, "model": spec.name, **device_info(device), "dtype": dtype_name,
        "date": datetime.date.today().isoformat(), "servesim_version": _version(),
        "num_threads": torch.get_num_threads(), "quick": request.quick, "tp": list(request.tp), "source": None,
        "notes": ["servesim profiler: median of timed repeats after warm-up, inputs rotated over copies",
                  "TP shards timed on one device",
                  "cpu_overhead (by entries) and cpu_overhead_prefill (per chunk): host "
                  "time fitted on reference-engine iterations (measured minus the kernels' predicted time), see "
                  "cpu_overhead_fit_s"],
    }
    if not spec.is_moe and not spec.uses_mla:
        fit = calibrate_overhead(spec, hardware, TableSet(frame, metadata), device, dtype, request.quick)
        metadata["cpu_overhead_fit_s"] = fit
        overhead = [{"operator": OVERHEAD_OPERATOR, "num_tokens": entries, "tp": tp,
                     "time_s": max(fit["per_iteration"] + fit["per_entry"] * entries, 1e-6)}
                    for tp in request.tp for entries in grid.entries]
        overhead += [{"operator": PREFILL_OVERHEAD_OPERATOR, "tp": tp, "time_s": max(fit["per_prefill_chunk"], 1e-6)}
                     for tp in request.tp]
        frame = pd.concat([frame, _frame(overhead, dtype_name)])
    return write_tables(out_dir, frame, metadata)


def _tasks(spec: ModelSpec, tps: tuple[int, ...], grid: Grid, dtype: torch.dtype, timer: Timer,
           seed: int) -> Iterator[tuple[dict, Callable[[], float]]]:
    """(row shape, measurement) of every shape to time, lazily so the bar shows real progress."""
    for tp in tps:
        bench = OperatorBench(spec, tp, dtype, timer, seed)
        for name in bench.token_operator_names():
            for count in grid.entries if name in ENTRY_OPERATORS else grid.tokens:
                yield {"operator": name, "num_tokens": count, "tp": tp}, partial(bench.token_operator, name, count)
        for new, context in grid.prefill:
            yield ({"operator": "attn_prefill", "num_tokens": new, "context_len": context, "tp": tp},
                   partial(bench.attn_prefill, new, context))
        for batch, context in grid.decode:
            yield ({"operator": "attn_decode", "num_tokens": batch, "context_len": context, "tp": tp},
                   partial(bench.attn_decode, batch, context))
    bench = OperatorBench(spec, tps[0], dtype, timer, seed)
    for nbytes in grid.message_bytes:
        yield {"operator": "kv_block_copy", "num_bytes": nbytes}, partial(bench.block_copy, nbytes)
        yield {"operator": "kv_swap_out", "num_bytes": nbytes}, partial(bench.swap, nbytes, to_host=True)
        yield {"operator": "kv_swap_in", "num_bytes": nbytes}, partial(bench.swap, nbytes, to_host=False)


def _frame(rows: list[dict], dtype: str, time_s: float | None = None) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    defaults: dict[str, int | str] = {"num_tokens": 0, "context_len": 0, "num_bytes": 0, "num_devices": 1, "tp": 1,
                                      "dtype": dtype}
    for column, value in defaults.items():
        frame[column] = frame[column].fillna(value) if column in frame else value
    if time_s is not None:
        frame["time_s"] = time_s
    return frame[list(COLUMNS)].astype(COLUMNS)


def _collective_rows(grid: Grid, dtype: torch.dtype, dtype_name: str) -> pd.DataFrame:
    from servesim.profiler.collectives import group_sizes, measure_collectives

    if not group_sizes():
        return pd.DataFrame(columns=list(COLUMNS)).astype(COLUMNS)
    rows = measure_collectives(grid.message_bytes, dtype)
    rows["tp"] = rows["num_devices"]
    return _frame(rows.to_dict("records"), dtype_name)


def calibrate_overhead(spec: ModelSpec, hardware: str, tables: TableSet, device: torch.device, dtype: torch.dtype,
                       quick: bool) -> dict[str, float]:
    """Host time of an iteration as `per_iteration + per_entry x entries + per_prefill_chunk x chunks`.

    The reference engine serves a calibration burst (a workload of its own, not the one a
    fidelity run checks); each iteration's measured time less the kernels' predicted time is
    its host time: scheduling, input preparation, Python between kernels. Least squares over
    the iterations gives the three coefficients (negative ones clipped to 0).
    """
    from servesim.profiler.serving import calibration_requests, run_engine

    requests = calibration_requests(spec, CALIBRATION_REQUESTS // (4 if quick else 1), seed=1)
    with warnings.catch_warnings():  # a quick grid is small: out-of-grid shapes are expected here
        warnings.simplefilter("ignore")
        model = TableCostModel(spec, load_hardware(hardware), ParallelPlan(), tables, "calibration")
        iterations = run_engine(spec, requests, device, dtype, num_blocks=1024, block_size=16,
                                scheduler={"max_num_batched_tokens": 256}, cost_model=model)
        shapes = [BatchShape(it.new_tokens, it.context_lens) for it in iterations]
        residual = np.array([(it.end_s - it.start_s) - model.iteration_time(shape)
                             + float(model.overhead_seconds(shape.num_entries))
                             for it, shape in zip(iterations, shapes, strict=True)])
    design = np.array([[1.0, shape.num_entries, len(shape.prefill_chunks())] for shape in shapes])
    keep = np.ones(len(residual), dtype=bool)
    for _ in range(2):  # least squares, then again without the iterations a hiccup slowed
        coefficients = np.linalg.lstsq(design[keep], residual[keep], rcond=None)[0]
        error = residual - design @ coefficients
        keep = np.abs(error - np.median(error)) <= 3 * np.median(np.abs(error - np.median(error))) + 1e-9
    per_entry, per_chunk = max(coefficients[1], 0.0), max(coefficients[2], 0.0)
    per_iteration = float(np.median((residual - design[:, 1] * per_entry - design[:, 2] * per_chunk)[keep]))
    return {"per_iteration": per_iteration, "per_entry": float(per_entry), "per_prefill_chunk": float(per_chunk),
            "num_iterations": len(iterations)}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("servesim")
    except PackageNotFoundError:
        return "0+unknown"

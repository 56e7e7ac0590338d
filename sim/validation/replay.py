"""Replay a real run in servesim: map its names to the catalogs, build the experiment, compare.

The replay uses the run's own requests at their real arrival times (as the engine saw them, so
the API server's path is left out: the real latencies are engine-side too), its engine limits,
its KV pool size when recorded, and one replica per data-parallel rank behind a
least-outstanding router (vLLM's DP load balancer picks the engine with the fewest queued and
running requests); with expert parallelism across the ranks those replicas split the experts and
step in lockstep, as vLLM's DP x EP engine does.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from servesim.hwmodels.catalog import list_hardware, list_models
from servesim.sim.experiment.config import ExperimentConfig
from servesim.sim.reporting.json_output import json_text
from servesim.sim.reporting.output_dir import ResultsClaim
from servesim.sim.reporting.progress import QUIET, ProgressOptions
from servesim.sim.reporting.results import RunResult, config_yaml, write_run_files
from servesim.sim.validation.compare import comparison, format_table, write_cdf_plot
from servesim.sim.validation.real_runs import RealRun, RealRunError

TRACE_FILE = "replayed_requests.csv"


@dataclass
class ReplayOptions:
    """What the user may change about a replay: catalog names, cost model, engine-time switches."""

    model: str | None = None
    hardware: str | None = None
    cost_model: str = "auto"
    overrides: list[str] = field(default_factory=list)
    """`KEY.PATH=VALUE` overrides of the replay's config, as `simrun run --set` takes them."""


@dataclass
class Replay:
    run: RealRun
    config: ExperimentConfig
    result: RunResult
    table: pd.DataFrame
    notes: list[str]


def _names() -> dict[str, dict[str, str]]:
    return yaml.safe_load(resources.files("servesim.sim.validation").joinpath("names.yaml").read_text())


def mapped_name(kind: str, recorded: str) -> str:
    """What names.yaml maps a recorded model or GPU name to (itself when unlisted); case is ignored."""
    mapping = {key.lower(): value for key, value in _names()[kind].items()}
    return mapping.get(recorded.lower(), recorded)


def catalog_name(kind: str, recorded: str, override: str | None) -> str:
    """The catalog name for a run's model or hardware (`kind`: models | hardware), or a clear error."""
    known = list_models() if kind == "models" else list_hardware()
    if override is not None:
        if override not in known:
            raise RealRunError(f"--{kind.removesuffix('s')} {override!r} is not in the {kind} catalog; "
                               f"known: {', '.join(known)}")
        return override
    name = mapped_name(kind, recorded)
    if name not in known:
        via = f" (names.yaml maps it to {name!r})" if name != recorded else " (names.yaml has no entry for it)"
        raise RealRunError(
            f"the run's {kind.removesuffix('s')} {recorded!r} has no catalog entry{via}; known: {', '.join(known)}. "
            f"Add the entry to the catalog, or replay on another one with --{kind.removesuffix('s')} NAME"
        )
    return name


def expert_parallel_note(run: RealRun, split: bool) -> str:
    """What a DP x EP replay does with the experts (`split`: `cluster.parallel.ep_across_replicas`)."""
    across = f"EP{run.settings.ep} across the {run.settings.dp} DP ranks"
    if split:
        return (f"{across}: the experts are split over the ranks, which step in lockstep "
                "(--set cluster.parallel.ep_across_replicas=false prices every expert on each rank instead)")
    return f"{across} is not modelled (cluster.parallel.ep_across_replicas=false): each replica prices every expert"


def replay_config(run: RealRun, options: ReplayOptions) -> tuple[dict[str, Any], list[str]]:
    """The experiment (as a config mapping) that replays `run`, and notes on what it cannot model."""
    settings = run.settings
    model = catalog_name("models", settings.model, options.model)
    hardware = catalog_name("hardware", settings.hardware, options.hardware)
    notes = [f"{settings.hardware} -> {hardware}, {settings.model} -> {model}"]
    parallel: dict[str, Any] = {"tp": settings.tp}
    if settings.ep > 1 and settings.dp > 1:
        parallel["ep_across_replicas"] = True
        notes.append(expert_parallel_note(run, split=True))
    has_hashes = "prefix_hashes" in run.requests.columns
    prefix_caching = settings.prefix_caching is not False and has_hashes  # on by default in vLLM's v1 engine
    if settings.prefix_caching is not False and not has_hashes:
        notes.append("prefix caching is not modelled: the request file carries no prompt token ids or hashes")
    scheduler: dict[str, Any] = {"name": "vllm", "chunked_prefill": True}
    for key in ("max_num_seqs", "max_num_batched_tokens"):
        if getattr(settings, key) is not None:
            scheduler[key] = getattr(settings, key)
    memory: dict[str, Any] = {"block_size": settings.block_size}
    if settings.num_gpu_blocks is not None:
        memory["num_kv_blocks"] = settings.num_gpu_blocks
    if settings.gpu_memory_utilization is not None:
        memory["gpu_memory_utilization"] = settings.gpu_memory_utilization
    if settings.max_model_len is not None:
        memory["max_model_len"] = settings.max_model_len
    cost_model: dict[str, Any] = {"kind": options.cost_model}
    if settings.link_gbps is not None or settings.link_latency_us is not None:
        cost_model.update(link_gbps=settings.link_gbps, link_latency_us=settings.link_latency_us)
        if settings.tp > 1 or settings.ep > 1:
            notes.append(f"TP and EP collectives priced on the run's recorded link ({settings.link_gbps} GB/s, "
                         f"{settings.link_latency_us} us latency), not from measured collectives")
    engine: dict[str, Any] = {"api_server": False}
    if settings.async_scheduling is not None:
        engine["async_scheduling"] = settings.async_scheduling
    if settings.cudagraph_capture_sizes:
        engine["cuda_graph_sizes"] = list(settings.cudagraph_capture_sizes)
    config = {
        "name": run.name.replace("/", "-"),
        "model": model,
        "hardware": hardware,
        "cost_model": cost_model,
        "cluster": {"replicas": settings.dp, "parallel": parallel, "router": {"name": "least_outstanding"}},
        "scheduler": scheduler,
        "memory": memory,
        "cache": {"prefix_caching": prefix_caching},
        "engine": engine,
        "workload": {"trace": {"path": TRACE_FILE, "format": "csv"}},
        "output": {"plots": False},
    }
    return config, notes


def replay(run: RealRun, options: ReplayOptions, work_dir: Path, progress: ProgressOptions = QUIET) -> Replay:
    """Simulate `run` with its trace written into `work_dir`; compare with the real timings."""
    from servesim.sim.experiment.loading import apply_overrides, validate_config
    from servesim.sim.runner import prepare, run_extent, simulate

    mapping, notes = replay_config(run, options)
    config = validate_config(apply_overrides(mapping, options.overrides), f"validate-real {run.name}")
    if not config.cluster.parallel.ep_across_replicas:  # overridden: say so
        split_note = expert_parallel_note(run, split=True)
        notes = [expert_parallel_note(run, split=False) if note == split_note else note for note in notes]
    write_trace(run, work_dir / TRACE_FILE)
    prepared = prepare(config, work_dir)
    notes[0] += f", cost model {prepared.cost_model.describe()['kind']}"  # what `auto` chose, as `simrun run` does
    with progress.reporter(run_extent(prepared)) as callback:
        result = simulate(prepared, callback)
    return Replay(run, config, result, comparison(run.requests, counted_as_real(result.requests, run)), notes)


def counted_as_real(simulated: pd.DataFrame, run: RealRun) -> pd.DataFrame:
    """The simulated requests with latencies counted from the moment the real ones count from.

    vLLM stamps `queued_ts` when its busy loop takes a request from its input queue, between two
    steps, so the real latencies leave out the wait for the step running at the arrival; the
    replay's arrival is that stamp, and its engine waits for its own step boundary too. Counting
    the simulated latencies from the replayed engine's pickup (`picked_up_s`) leaves the same wait
    out of both.
    """
    if run.settings.latencies_from == "arrival":
        return simulated
    counted = simulated.copy()
    counted["arrival_s"] = counted["picked_up_s"].fillna(counted["arrival_s"])
    return counted


def write_trace(run: RealRun, path: Path) -> None:
    """The run's requests as a canonical CSV trace (with prefix block hashes when the run has them)."""
    trace = run.requests[["arrival_s", "prompt_tokens", "output_tokens"]].copy()
    if "prefix_hashes" in run.requests.columns:
        trace["prefix_hashes"] = [" ".join(map(str, hashes)) for hashes in run.requests["prefix_hashes"]]
        trace["prefix_block_tokens"] = run.settings.block_size
    trace.to_csv(path, index=False)


def write_replay(replayed: Replay, claim: ResultsClaim) -> None:
    """The results directory: the simulated run's files, the comparison table (JSON, CSV) and the CDF plot."""
    with claim.staging("validate-real", config_yaml(replayed.config)) as staging:
        write_trace(replayed.run, staging / TRACE_FILE)
        write_run_files(replayed.result, staging, plots=False)
        real_requests = replayed.run.requests.drop(columns="prefix_hashes", errors="ignore")
        real_requests.to_csv(staging / "real_requests.csv", index=False)
        replayed.table.to_csv(staging / "comparison.csv", index=False)
        document = {"run": replayed.run.name, "notes": replayed.notes, "settings": replayed.run.settings.model_dump(),
                    "figures": json.loads(replayed.table.to_json(orient="records"))}
        (staging / "comparison.json").write_text(json_text(document))
        write_cdf_plot(replayed.run.requests, replayed.result.requests, staging / "cdf.png", replayed.run.name)


def report(replayed: Replay) -> str:
    return "\n".join([f"{replayed.run.name}: " + "; ".join(replayed.notes), format_table(replayed.table)])

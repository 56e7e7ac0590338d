"""Peak memory against trace length: N synthetic requests through R Llama-3.1-8B replicas on H100s.

Lognormal prompts (mean 512) and outputs (mean 128), Poisson arrivals at 8 req/s per replica,
vLLM scheduling with chunked prefill, the roofline cost model, and the results directory
written (without plots) so the spilled request table is part of the figure. Prints peak
resident memory (`resource.getrusage`'s max RSS) and wall time; bounded memory shows as a peak
that stays roughly flat as `--requests` grows.

    python benchmarks/bench_memory.py [--requests N] [--replicas R] [--trace FILE [--format F]] [--prepare-only]
    python benchmarks/bench_memory.py --requests 1000000 --replicas 64

`--trace FILE` replays a trace instead (read in chunks), in `--format` csv (default), jsonl,
parquet, azure, mooncake or ragpulse; a FILE that does not exist is first written in that format
with the N synthetic requests, so the workloads are the same requests (RAGPulse's rows shuffled,
as the published file is unsorted), and the command stops: run it again to measure.
`--prepare-only` stops after `prepare` and one pass over the workload's rows: what the
workload itself costs, without the simulation.

Run each size in its own process: max RSS only ever grows within one.
"""
from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from servesim.sim.experiment.config import ExperimentConfig
from servesim.sim.experiment.loading import validate_config
from servesim.sim.experiment.workload import build_table
from servesim.sim.reporting.results import write_results
from servesim.sim.runner import prepare, simulate

RATE_PER_REPLICA = 8.0


def benchmark_config(num_requests: int, num_replicas: int) -> dict[str, Any]:
    return {
        "name": "bench_memory",
        "model": "llama-3.1-8b",
        "hardware": "h100-sxm",
        "cost_model": {"kind": "roofline"},
        "cluster": {"replicas": num_replicas, "router": {"name": "round_robin"}},
        "scheduler": {"name": "vllm", "max_num_batched_tokens": 2048, "chunked_prefill": True},
        "workload": {
            "arrival": {"process": "poisson", "rate": RATE_PER_REPLICA * num_replicas},
            "prompt_tokens": {"dist": "lognormal", "mean": 512, "sigma": 0.8, "max": 4096},
            "output_tokens": {"dist": "lognormal", "mean": 128, "sigma": 0.8, "max": 1024},
            "num_requests": num_requests,
        },
        "output": {"plots": False},
    }


def trace_config(config: ExperimentConfig, path: Path, format: str) -> ExperimentConfig:
    """The config replaying `path`; written first from the synthetic workload if it does not exist."""
    if not path.exists():
        write_trace(build_table(config.workload, Path("."), config.seed), path, format)
    data = config.model_dump(mode="json", exclude_none=True)
    data["workload"] = {"trace": {"path": str(path.resolve()), "format": format}}
    return validate_config(data, origin="bench_memory")


def write_trace(table: pd.DataFrame, path: Path, format: str) -> None:
    """The canonical table as a file of `format`, written as the format is published."""
    if format == "csv":
        table.to_csv(path, index=False)
    elif format == "parquet":
        table.to_parquet(path, index=False)
    elif format == "jsonl":
        table.to_json(path, orient="records", lines=True)
    elif format == "azure":
        stamps = pd.Timestamp("2023-11-16 18:15:46") + pd.to_timedelta(table["arrival_s"], unit="s")
        pd.DataFrame({"TIMESTAMP": stamps.dt.strftime("%Y-%m-%d %H:%M:%S.%f") + "0",
                      "ContextTokens": table["prompt_tokens"],
                      "GeneratedTokens": table["output_tokens"]}).to_csv(path, index=False)
    elif format == "mooncake":
        pd.DataFrame({"timestamp": (table["arrival_s"] * 1000).round().astype("int64"),
                      "input_length": table["prompt_tokens"], "output_length": table["output_tokens"],
                      "hash_ids": [list(range(-(-p // 512))) for p in table["prompt_tokens"].tolist()],
                      }).to_json(path, orient="records", lines=True)
    elif format == "ragpulse":
        order = np.random.default_rng(0).permutation(len(table))
        pd.DataFrame({"timestamp": table["arrival_s"].astype("int64").astype(str).to_numpy()[order],
                      "input_length": table["prompt_tokens"].to_numpy()[order],
                      "output_length": table["output_tokens"].to_numpy()[order],
                      "session_id": [f"s{i % 1000}" for i in order],
                      "hash_ids": [{"sys_prompt": [0, 1], "user_input": [int(i)]} for i in order],
                      }).to_json(path, orient="records", lines=True)
    else:
        raise SystemExit(f"bench_memory: unknown --format {format!r}")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--replicas", type=int, default=4)
    parser.add_argument("--trace", type=Path, help="a trace to replay (written first if absent)")
    parser.add_argument("--format", default="csv", help="the trace's format (default csv)")
    parser.add_argument("--prepare-only", action="store_true",
                        help="measure prepare and one pass over the workload's rows, not the run")
    args = parser.parse_args()
    config = validate_config(benchmark_config(args.requests, args.replicas), origin="bench_memory")
    if args.trace is not None:
        written = not args.trace.exists()
        config = trace_config(config, args.trace, args.format)
        if written:  # writing held the whole table: measure in a fresh process
            print(f"wrote {args.trace} ({args.format}); run the same command again to measure")
            return
    baseline_mb = peak_rss_mb()
    if args.prepare_only:
        started = time.perf_counter()
        workload = prepare(config).workload
        rows = sum(len(chunk) for chunk in workload.chunks())
        print(f"workload                {rows:,} requests ({args.format if args.trace else 'synthetic'}), "
              f"prepared and read once in {time.perf_counter() - started:.1f} s")
        print(f"peak memory (max RSS)   {peak_rss_mb():,.0f} MB (after imports: {baseline_mb:,.0f} MB)")
        return
    started = time.perf_counter()
    result = simulate(prepare(config))
    simulated = time.perf_counter()
    simulated_mb = peak_rss_mb()
    with tempfile.TemporaryDirectory() as scratch:
        write_results(result, Path(scratch) / "results", plots=False)
    written = time.perf_counter()
    summary = result.summary
    print(f"requests, replicas      {args.requests:,} on {args.replicas}")
    print(f"requests finished       {summary['num_finished']:,} of {summary['num_requests']:,}")
    print(f"simulated time          {summary['sim_time_s']:,.1f} s")
    print(f"wall, simulation        {simulated - started:.1f} s")
    print(f"wall, results written   {written - simulated:.1f} s")
    print(f"peak memory (max RSS)   {peak_rss_mb():,.0f} MB (after imports: {baseline_mb:,.0f} MB, "
          f"after the simulation and its summary: {simulated_mb:,.0f} MB)")
    print(f"p50 / p99 TBT           {summary['tbt_s']['p50']:.4f} / {summary['tbt_s']['p99']:.4f} s")


if __name__ == "__main__":
    main()

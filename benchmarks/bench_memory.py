"""Peak memory against trace length: N synthetic requests through R Llama-3.1-8B replicas on H100s.

Lognormal prompts (mean 512) and outputs (mean 128), Poisson arrivals at 8 req/s per replica,
vLLM scheduling with chunked prefill, the roofline cost model, and the results directory
written (without plots) so the spilled request table is part of the figure. Prints peak
resident memory (`resource.getrusage`'s max RSS) and wall time; bounded memory shows as a peak
that stays roughly flat as `--requests` grows.

    python benchmarks/bench_memory.py [--requests N] [--replicas R] [--trace FILE]
    python benchmarks/bench_memory.py --requests 1000000 --replicas 64

`--trace FILE` replays a canonical CSV trace instead (read in chunks); a FILE that does not exist
is first written with the N synthetic requests, so the two workloads are the same requests.

Run each size in its own process: max RSS only ever grows within one.
"""
from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

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


def trace_config(config: ExperimentConfig, path: Path) -> ExperimentConfig:
    """The config replaying `path`; written first from the synthetic workload if it does not exist."""
    if not path.exists():
        build_table(config.workload, Path("."), config.seed).to_csv(path, index=False)
    data = config.model_dump(mode="json", exclude_none=True)
    data["workload"] = {"trace": {"path": str(path.resolve()), "format": "csv"}}
    return validate_config(data, origin="bench_memory")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--replicas", type=int, default=4)
    parser.add_argument("--trace", type=Path, help="a canonical CSV trace to replay (written first if absent)")
    args = parser.parse_args()
    config = validate_config(benchmark_config(args.requests, args.replicas), origin="bench_memory")
    if args.trace is not None:
        config = trace_config(config, args.trace)
    baseline_mb = peak_rss_mb()
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

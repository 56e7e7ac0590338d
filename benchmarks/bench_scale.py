"""Engine speed at scale: many requests on many replicas, printed against the README's figures.

    (b) cluster4   100,000 requests on 4 Llama-2-70B replicas (A100, TP2), 512-token chunks,
                   1,024 prompt and 256 output tokens, Poisson at 4 req/s (Vidur: 244 s, 4.56 GB)
    (c) cluster64  1,000,000 requests of the same shape on 64 such replicas at 64 req/s
    (d) azure8     one hour of the Azure 2023 conversation trace on 8 Llama-3.1-8B replicas
                   (H100), prefix caching on; the full trace is read from `--azure-trace`
                   (default: ../shared beside the repository) when it is there, else the
                   bundled 253-second excerpt stands in (and says so)

Each prints wall seconds (simulation alone and whole, imports included), simulated requests
and iterations per wall second, peak resident memory, and the ratio of the simulation's wall
time to the README's previous figure. Every benchmark runs in a fresh process, so that peak
memory is its own; `--quick` runs each at a tenth of its size (1% for cluster64), `--share F`
at the fraction F of it. `--workers N` simulates the replicas in N processes
(`simulation.workers`); the CPU seconds printed are then those of every process.

    python benchmarks/bench_scale.py [cluster4 cluster64 azure8] [--quick | --share F] [--no-fast-forward]
                                     [--workers N]
"""
from __future__ import annotations

import time

START = time.perf_counter()

import argparse  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from measured_run import measure, print_figures  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FULL_AZURE_TRACE = REPO.parent / "shared/traces/azure_llm_2023/AzureLLMInferenceTrace_conv.csv"
AZURE_TRACE_REQUESTS = 19_366

PREVIOUS_SIMULATION_S = {("cluster4", 1): 33.86, ("cluster4", 2): 20.42, ("cluster64", 2): 230.54, ("azure8", 1): 5.18}
"""The simulation seconds of the README's "Benchmarks" table's "before" column (the interpreted build, the fastest
of its runs beside the compiled one), by benchmark and worker processes; a pair not there has no previous figure."""

QUICK_SHARE = {"cluster4": 0.1, "cluster64": 0.01, "azure8": 0.1}


def synthetic_cluster(num_requests: int, replicas: int, fast_forward: bool, workers: int) -> dict:
    """(b) and (c): bench_core's workload and replica, `replicas` of them, one request per second each."""
    return {
        "name": f"bench_scale_{replicas}",
        "model": "llama-2-70b",
        "hardware": "a100-80g",
        "cost_model": {"kind": "roofline"},
        "cluster": {"replicas": replicas, "parallel": {"tp": 2}},
        "scheduler": {"name": "vllm", "max_num_batched_tokens": 512, "chunked_prefill": True},
        "workload": {
            "arrival": {"process": "poisson", "rate": float(replicas)},
            "prompt_tokens": {"dist": "fixed", "value": 1024},
            "output_tokens": {"dist": "fixed", "value": 256},
            "num_requests": num_requests,
        },
        "simulation": {"fast_forward": fast_forward, "workers": workers},
        "output": {"plots": False},
    }


def azure_cluster(num_requests: int | None, fast_forward: bool, workers: int, path: Path) -> tuple[dict, str]:
    """(d): the Azure conversation trace on 8 replicas with prefix caching, and which trace it is."""
    if path.is_file():
        trace, label = {"path": str(path), "format": "azure"}, "full Azure 2023 conversation trace"
    else:
        trace, label = {"sample": "azure_conv", "format": "azure"}, "bundled 253 s excerpt (full trace not found)"
    config = {
        "name": "bench_scale_azure8",
        "model": "llama-3.1-8b",
        "hardware": "h100-sxm",
        "cost_model": {"kind": "roofline"},  # as the previous release's figure
        "cluster": {"replicas": 8},
        "cache": {"prefix_caching": True},
        "workload": {"trace": trace, **({"num_requests": num_requests} if num_requests else {})},
        "simulation": {"fast_forward": fast_forward, "workers": workers},
        "output": {"plots": False},
    }
    return config, label


def build(name: str, share: float, fast_forward: bool, workers: int, azure_trace: Path) -> tuple[dict, str]:
    if name == "cluster4":
        return synthetic_cluster(int(100_000 * share), 4, fast_forward, workers), "100,000 requests, 4 replicas"
    if name == "cluster64":
        return (synthetic_cluster(int(1_000_000 * share), 64, fast_forward, workers),
                "1,000,000 requests, 64 replicas")
    return azure_cluster(int(AZURE_TRACE_REQUESTS * share) if share < 1 else None, fast_forward, workers,
                         azure_trace)


def run_one(name: str, share: float, fast_forward: bool, workers: int, azure_trace: Path) -> None:
    """Run one benchmark in this process and print its figures."""
    from servesim.sim.experiment.loading import validate_config

    raw, label = build(name, share, fast_forward, workers, azure_trace)
    config = validate_config(raw, origin=f"bench_scale {name}")
    run = measure(config, START)
    previous = PREVIOUS_SIMULATION_S.get((name, workers))
    ratio = ("no previous figure" if previous is None or share < 1 or not fast_forward
             else f"{previous / run.sim_wall_s:.2f}x the speed of the previous {previous} s")
    print(f"== {name}: {label}{f' (share {share:g})' if share < 1 else ''}")
    print_figures(run, ratio)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("benchmarks", nargs="*", metavar="NAME",
                        help=f"which to run, of {', '.join(QUICK_SHARE)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="a tenth of each size (1%% of cluster64)")
    parser.add_argument("--share", type=float, default=None, help="run this fraction of each benchmark's size")
    parser.add_argument("--no-fast-forward", action="store_true", help="simulate every iteration as its own step")
    parser.add_argument("--azure-trace", type=Path, default=FULL_AZURE_TRACE,
                        help="the Azure 2023 conversation trace CSV for azure8")
    parser.add_argument("--workers", type=int, default=1, metavar="N",
                        help="simulate the replicas in N processes (simulation.workers; default 1)")
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    unknown = [name for name in args.benchmarks if name not in QUICK_SHARE]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(QUICK_SHARE)}")
    args.benchmarks = args.benchmarks or list(QUICK_SHARE)
    if args.share is not None and not 0 < args.share <= 1:
        parser.error(f"--share must be a fraction in (0, 1], not {args.share}")
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, not {args.workers}")
    if args.in_process:
        for name in args.benchmarks:
            share = args.share or (QUICK_SHARE[name] if args.quick else 1.0)
            run_one(name, share, not args.no_fast_forward, args.workers, args.azure_trace)
        return
    for name in args.benchmarks:
        command = [sys.executable, __file__, name, "--in-process", "--azure-trace", str(args.azure_trace)]
        command += ["--quick"] * args.quick + ["--no-fast-forward"] * args.no_fast_forward
        command += ["--share", str(args.share)] if args.share is not None else []
        command += ["--workers", str(args.workers)]
        subprocess.run(command, check=True)


if __name__ == "__main__":
    main()

"""Core engine speed: 10,000 requests through one Llama-2-70B replica on A100s with TP2.

Fixed 1024-token prompts and 256 output tokens, Poisson arrivals at 1 req/s, chunked prefill
with a 512-token budget. Prints wall seconds (whole process and simulation alone, and its ratio
to the previous figure in the README), CPU seconds, simulated requests and iterations
per wall second, and peak resident memory.

    python benchmarks/bench_core.py [--requests N] [--no-fast-forward] [--cost-model roofline|table]

`--cost-model table` prices iterations from the shipped A100 tables (Vidur's measurements,
hwmodels/data/tables/vidur/a100-80g/llama-2-70b) instead of the roofline.
"""
from __future__ import annotations

import time

START = time.perf_counter()

import argparse  # noqa: E402

from measured_run import measure, print_figures  # noqa: E402

from servesim.sim.experiment.loading import validate_config  # noqa: E402

PREVIOUS_SIMULATION_S = 2.91
"""The simulation's wall seconds in the README's "Benchmarks" table's "before" column (the interpreted build,
the fastest of three runs beside the compiled one: 2.91 - 3.51 s)."""


def benchmark_config(num_requests: int, fast_forward: bool, cost_model: str = "roofline") -> dict:
    return {
        "name": "bench_core",
        "model": "llama-2-70b",
        "hardware": "a100-80g",
        "cost_model": {"kind": cost_model, **({"source": "vidur"} if cost_model == "table" else {})},
        "cluster": {"parallel": {"tp": 2}},
        "scheduler": {"name": "vllm", "max_num_batched_tokens": 512, "chunked_prefill": True},
        "workload": {
            "arrival": {"process": "poisson", "rate": 1.0},
            "prompt_tokens": {"dist": "fixed", "value": 1024},
            "output_tokens": {"dist": "fixed", "value": 256},
            "num_requests": num_requests,
        },
        "simulation": {"fast_forward": fast_forward},
        "output": {"plots": False},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--no-fast-forward", action="store_true", help="simulate every iteration as its own step")
    parser.add_argument("--cost-model", choices=("roofline", "table"), default="roofline", help="iteration-time model")
    args = parser.parse_args()
    config = validate_config(benchmark_config(args.requests, not args.no_fast_forward, args.cost_model),
                             origin="bench_core")
    run = measure(config, START)
    as_before = args.requests == 10_000 and not args.no_fast_forward and args.cost_model == "roofline"
    print_figures(run, f"{PREVIOUS_SIMULATION_S / run.sim_wall_s:.2f}x the speed of the previous "
                       f"{PREVIOUS_SIMULATION_S} s" if as_before else "no previous figure for these options")
    summary = run.summary
    print(f"p50 TTFT / TBT / E2E    {summary['ttft_s']['p50']:.3f} / {summary['tbt_s']['p50']:.4f} / "
          f"{summary['e2e_s']['p50']:.2f} s")


if __name__ == "__main__":
    main()

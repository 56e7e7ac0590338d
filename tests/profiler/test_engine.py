"""The reference engine: real forward passes under the simulator's own scheduler."""
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from servesim.hwmodels import load_model  # noqa: E402
from servesim.profiler.serving import requests_from_workload, run_engine  # noqa: E402
from servesim.sim.experiment.loading import validate_config  # noqa: E402
from servesim.sim.runner import run_experiment  # noqa: E402

SPEC = load_model("tiny-llama")


def burst(tmp_path, prompts, outputs):
    """A trace whose requests all arrive at 0, so scheduling cannot depend on timing."""
    path = tmp_path / "burst.csv"
    pd.DataFrame({"arrival_s": 0.0, "prompt_tokens": prompts, "output_tokens": outputs}).to_csv(path, index=False)
    return path


def serve(workload, num_blocks, scheduler):
    requests = requests_from_workload(workload, SPEC)
    iterations = run_engine(SPEC, requests, torch.device("cpu"), torch.bfloat16, num_blocks, 16, scheduler)
    return requests, iterations


def test_every_request_finishes_with_its_tokens_and_blocks_come_back(tmp_path):
    workload = pd.read_csv(burst(tmp_path, [40, 90, 17, 130], [5, 3, 9, 4]))
    requests, iterations = serve(workload, 64, {"max_num_batched_tokens": 64})
    assert all(len(r.token_times_s) == r.output_tokens and not r.rejected for r in requests)
    assert all(r.num_blocks == 0 for r in requests)
    assert all(it.end_s > it.start_s for it in iterations)
    assert all(a.end_s <= b.start_s for a, b in zip(iterations, iterations[1:]))
    assert all(sum(it.new_tokens) <= 64 for it in iterations)


def test_batches_match_the_simulator_step_for_step_including_preemptions(tmp_path):
    prompts, outputs = [60, 45, 80, 33, 70, 52], [30, 25, 20, 40, 12, 18]
    trace = burst(tmp_path, prompts, outputs)
    scheduler = {"name": "vllm", "max_num_batched_tokens": 64, "max_num_seqs": 4}
    config = validate_config({
        "model": "tiny-llama", "hardware": "cpu", "cost_model": {"kind": "constant", "iteration_s": 0.01},
        "scheduler": scheduler, "memory": {"num_kv_blocks": 14},
        "workload": {"trace": {"path": str(trace), "format": "csv"}},
        "output": {"iterations": True, "plots": False}, "simulation": {"fast_forward": False},
    })
    simulated = run_experiment(config).iterations
    requests, iterations = serve(pd.read_csv(trace), 14, {"max_num_batched_tokens": 64, "max_num_seqs": 4})
    assert sum(r.num_preemptions for r in requests) > 0
    real = [(len(it.new_tokens), sum(it.new_tokens)) for it in iterations]
    assert real == list(zip(simulated["batch_size"], simulated["num_tokens"]))

"""TP scaling of a 70B model (experiments/tp_scaling.yaml) on small workloads: more devices per
replica cut per-token latency at low load; at saturation the throughput per GPU peaks at TP 4,
between a TP 2 replica whose KV memory limits its batch and a TP 8 one that pays for collectives
on smaller per-device matrices."""
import pytest
import yaml

from servesim.sim import load_config, run_experiment
from servesim.sim.errors import ConfigError
from tests.experiments.claims import EXPERIMENTS

DEGREES = (2, 4, 8)


def summary(tp: int, overrides: dict) -> dict:
    """One point of the sweep, at `tp`, with the workload shrunk by `overrides`."""
    config = yaml.safe_load((EXPERIMENTS / "tp_scaling.yaml").read_text())
    del config["sweep"]
    return run_experiment(load_config(config, {"cluster.parallel.tp": tp, **overrides})).summary


def test_more_tensor_parallelism_lowers_tpot_and_ttft_at_low_load():
    runs = [summary(tp, {"workload.num_requests": 20, "workload.arrival.rate": 0.25}) for tp in DEGREES]
    tpot = [run["tpot_s"]["p50"] for run in runs]
    ttft = [run["ttft_s"]["p50"] for run in runs]
    assert tpot[0] > tpot[1] > tpot[2]
    assert ttft[0] > ttft[1] > ttft[2]


def test_throughput_per_gpu_at_saturation_peaks_at_tp4():
    runs = {tp: summary(tp, {"workload.num_requests": 300, "workload.arrival.process": "batch"}) for tp in DEGREES}
    per_gpu = {tp: run["throughput"]["output_tokens_per_s"] / tp for tp, run in runs.items()}
    assert per_gpu[4] > per_gpu[2] and per_gpu[4] > per_gpu[8], per_gpu
    assert runs[2]["num_preemptions"] > 0 == runs[4]["num_preemptions"]  # TP 2's small KV pool
    total = [runs[tp]["throughput"]["output_tokens_per_s"] for tp in DEGREES]
    assert total[0] < total[1] < total[2]  # more devices still serve more in all


def test_tp1_is_refused_because_the_weights_do_not_fit():
    with pytest.raises(ConfigError, match="does not fit"):
        summary(1, {"workload.num_requests": 5})

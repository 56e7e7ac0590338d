"""The engine against closed forms of queueing theory."""
import numpy as np
import pytest

from servesim.hwmodels import ConstantCostModel
from tests.sim.engine_harness import run_engine

ITERATION_S = 0.01
OUTPUT_TOKENS = 5  # one prefill iteration (first token) + 4 decode iterations
SERVICE_S = OUTPUT_TOKENS * ITERATION_S


def poisson_specs(rate: float, n: int, seed: int) -> list[tuple[float, int, int]]:
    arrivals = np.cumsum(np.random.default_rng(seed).exponential(1 / rate, n))
    return [(float(t), 32, OUTPUT_TOKENS) for t in arrivals]


@pytest.mark.parametrize("utilisation", [0.5, 0.8])
def test_one_request_at_a_time_is_an_md1_queue(utilisation):
    """Pollaczek-Khinchine for M/D/1: mean wait = rho * D / (2 (1 - rho))."""
    rate = utilisation / SERVICE_S
    run = run_engine(
        poisson_specs(rate, 40_000, seed=1),
        ConstantCostModel(ITERATION_S),
        scheduler={"max_num_seqs": 1, "max_num_batched_tokens": 64},
    )
    waits = np.array([r.first_scheduled_s - r.arrival_s for r in run.requests])
    expected = utilisation * SERVICE_S / (2 * (1 - utilisation))
    assert waits.mean() == pytest.approx(expected, rel=0.05)
    service = np.array([r.finish_s - r.first_scheduled_s for r in run.requests])
    np.testing.assert_allclose(service, SERVICE_S, rtol=1e-9)


def test_littles_law_holds_on_the_system_time_series():
    """Time-average number in system = arrival rate x mean time in system, over the whole run."""
    specs = [(t, p, o) for (t, _, _), p, o in zip(
        poisson_specs(20.0, 3_000, seed=2),
        np.random.default_rng(3).integers(16, 512, 3_000).tolist(),
        np.random.default_rng(4).integers(1, 64, 3_000).tolist(),
        strict=True,
    )]
    run = run_engine(specs, ConstantCostModel(0.005, 2e-5), num_blocks=400, scheduler={"max_num_batched_tokens": 512})
    series = run.metrics.system_series()
    times = series["time_s"].to_numpy()
    counts = series["num_in_system"].to_numpy()
    area = float(np.sum(counts[:-1] * np.diff(times)))
    span = times[-1] - times[0]
    sojourn = np.array([r.finish_s - r.arrival_s for r in run.requests])
    mean_in_system = area / span
    arrival_rate = len(specs) / span
    assert counts[-1] == 0
    assert mean_in_system == pytest.approx(arrival_rate * sojourn.mean(), rel=1e-9)
    assert mean_in_system > 1.0

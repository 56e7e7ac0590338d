"""Past-Future admits a request only if the batch's predicted peak KV memory, with it, fits."""
import numpy as np
import pytest

from servesim.hwmodels import ConstantCostModel
from servesim.policies import create_policy
from servesim.policies.schedulers.past_future import peak_blocks, predicted_lengths
from tests.policies.views import FakeKv, FakeReplica, decoding, finished, waiting
from tests.sim.engine_harness import run_engine


def scheduler(name: str, **params):
    preemption = create_policy("preemption", "recompute", {}, rng=np.random.default_rng(0))
    return create_policy("scheduler", name, params, preemption=preemption, rng=np.random.default_rng(0))


def admitted(decision, request) -> bool:
    return any(r is request for r, _ in decision.scheduled)


def tight_replica(history_output: int, num_history: int = 50) -> tuple[FakeReplica, object]:
    """100 blocks of 16 tokens; two 200-token prompts decoding (10 tokens generated), one 300-token prompt waiting.

    Now they hold 2 x 14 blocks, so the newcomer's 19 fit the 72 free ones.
    """
    running = [decoding(0, 200, 1000, generated=10), decoding(1, 200, 1000, generated=10)]
    newcomer = waiting(2, 300, 1000)
    history = [finished(100 + i, history_output) for i in range(num_history)]
    kv = FakeKv(num_blocks=100, num_free_blocks=100 - sum(r.num_blocks for r in running))
    return FakeReplica(running=running, waiting=[newcomer], kv=kv, recently_finished=history), newcomer


def test_refuses_a_request_that_fits_now_but_not_at_the_predicted_peak():
    # The past says 400 tokens: the two running requests grow to 599 tokens (38 blocks) each and
    # the newcomer to 699 (44); all three are alive together for 390 more steps: 120 blocks > 100.
    replica, newcomer = tight_replica(history_output=400)
    past_future = scheduler("past_future")
    assert not admitted(past_future.schedule(replica, 0.0), newcomer)
    assert past_future.predicted_peak([210, 210, 300], [10, 10, 0], 16) == 120
    assert admitted(scheduler("vllm").schedule(replica, 0.0), newcomer)  # aggressive: it fits the free blocks


def test_admits_when_the_past_predicts_short_outputs():
    # With 20-token outputs the batch peaks at 49 blocks: room for the newcomer.
    replica, newcomer = tight_replica(history_output=20)
    assert admitted(scheduler("past_future").schedule(replica, 0.0), newcomer)


def test_admits_as_aggressively_as_vllm_without_enough_history():
    replica, newcomer = tight_replica(history_output=400, num_history=19)
    assert admitted(scheduler("past_future", min_history=20).schedule(replica, 0.0), newcomer)


def test_always_admits_into_an_empty_batch():
    # Predicted to need 44 of 30 blocks, but nothing else could ever run first.
    newcomer = waiting(0, 300, 1000)
    replica = FakeReplica(waiting=[newcomer], kv=FakeKv(num_blocks=30, num_free_blocks=30),
                          recently_finished=[finished(100 + i, 400) for i in range(50)])
    assert admitted(scheduler("past_future").schedule(replica, 0.0), newcomer)


def test_predicts_from_the_lengths_beyond_what_a_request_has_generated():
    history = np.array([10, 20, 30, 40, 50, 60, 70, 80, 90, 100])
    generated = np.array([0, 45, 95, 100, 150])
    # Medians of [10..100], [50..100], [100], and nothing left: the next token ends it.
    assert predicted_lengths(history, generated, 0.5).tolist() == [50, 70, 100, 101, 151]
    assert predicted_lengths(history, generated, 0.9).tolist() == [90, 100, 100, 101, 151]


def test_peak_is_just_before_a_finish():
    # Block size 10. A holds 21 tokens and ends in 5 steps, B 11 tokens and ends in 2: after step 2
    # A holds 22 tokens (3 blocks) and B 12 (2 blocks); after step 5 A alone holds 25 (3 blocks).
    assert peak_blocks(np.array([21, 11]), np.array([5, 2]), 10) == 5
    # Now A ends after 9 steps: alone at the end it holds 29 tokens, still 3 blocks; the peak is step 1.
    assert peak_blocks(np.array([21, 11]), np.array([9, 1]), 10) == 5


def test_peak_counts_each_last_block_whole():
    # After step 2, A holds 20 tokens and B 10: 3 blocks exactly; the bound may add up to one per request.
    assert peak_blocks(np.array([19, 9]), np.array([2, 2]), 10) == 4


def test_is_stable_under_decode_only_while_nothing_waits():
    # Its admissions follow the predicted peak, which moves as requests decode; with nothing
    # waiting it schedules every running decode, like vLLM.
    policy = scheduler("past_future")
    assert policy.stable_under_decode is True and policy.stable_while_waiting is False


def test_causes_fewer_preemptions_than_vllm_when_memory_is_tight():
    # 400 blocks of 16 tokens (6,400 tokens) for requests of 200-600 prompt and 50-700 output tokens
    # arriving faster than they finish: aggressive admission fills the pool and evicts.
    rng = np.random.default_rng(3)
    specs = [(i * 0.02, int(rng.integers(200, 600)), int(rng.integers(50, 700))) for i in range(300)]
    cost = ConstantCostModel(0.01, 1e-5)
    aggressive = run_engine(specs, cost, num_blocks=400)
    past_future = run_engine(specs, cost, num_blocks=400, scheduler_name="past_future")
    preemptions = [sum(r.num_preemptions for r in run.requests) for run in (aggressive, past_future)]
    assert preemptions[0] > 0
    assert preemptions[1] < preemptions[0] / 2
    assert all(r.num_generated == r.output_tokens for r in past_future.requests)


@pytest.mark.parametrize("quantile", [0.0, 1.0])
def test_quantile_is_strictly_inside_the_unit_interval(quantile):
    from servesim.policies import PolicyError, validate_params

    with pytest.raises(PolicyError, match="quantile"):
        validate_params("scheduler", "past_future", {"quantile": quantile})

"""Intra-GPU disaggregation: the shared device's timeline, the two-loop replica, its invariants."""
from __future__ import annotations

import numpy as np
import pytest
import simpy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servesim.hwmodels import BatchShape, ConstantCostModel, ParallelPlan, load_hardware, load_model
from servesim.hwmodels.sm_share import PhaseWork, SmShareModel
from servesim.policies import PolicyContractError, SplitPolicy, SplitView, create_policy
from servesim.policies.base import PolicyParams
from servesim.sim.engine.cluster import Cluster
from servesim.sim.engine.intra_gpu import IntraGpuReplica
from servesim.sim.engine.kv_memory import BlockPool
from servesim.sim.engine.replica import ReplicaSetup
from servesim.sim.engine.request import Request, RequestState
from servesim.sim.engine.shared_device import Phase, SharedDevice
from servesim.sim.reporting.metrics import MetricsRecorder

# The shared device with hand-made work -----------------------------------------------------------

class GivenWork(SmShareModel):
    """Work by batch size: a batch of `n` tokens is `works[n]`."""

    def __init__(self, works: dict[int, PhaseWork]) -> None:
        self.works = works

    def work(self, batch: BatchShape) -> PhaseWork:
        return self.works[batch.num_tokens]


COMPUTE_BOUND = PhaseWork(np.array([1.0]), np.array([0.0]), kernel_s=1.0, host_s=0.0, saturation_share=0.4)
MEMORY_BOUND = PhaseWork(np.array([0.0]), np.array([1.0]), kernel_s=1.0, host_s=0.0, saturation_share=0.4)
DECODE = PhaseWork(np.array([0.0]), np.array([1.0]), kernel_s=0.1, host_s=0.0, saturation_share=0.4)
PREFILL_BATCH, DECODE_BATCH = BatchShape((100,), (0,)), BatchShape((1,), (50,))


class WholeDeviceWhenAlone(SplitPolicy):
    """Half the SMs each when both phases run; everything to a phase that runs alone."""

    Params = PolicyParams

    def prefill_share(self, split: SplitView, now: float) -> float:
        if split.prefill_tokens and split.num_decodes:
            return 0.5
        return 1.0 if split.prefill_tokens else 0.0


def timeline(prefill_work: PhaseWork, policy: SplitPolicy, decode_at_s: float = 0.5) -> dict[str, float]:
    """A prefill from t=0 and a decode from `decode_at_s`: when each ends."""
    env = simpy.Environment()
    device = SharedDevice(env, GivenWork({100: prefill_work, 1: DECODE}), policy, lambda: 100)
    ends: dict[str, float] = {}

    def run(phase: Phase, batch: BatchShape, at_s: float):
        yield env.timeout(at_s)
        yield device.run(phase, batch)
        ends[phase.value] = env.now

    env.process(run(Phase.PREFILL, PREFILL_BATCH, 0.0))
    env.process(run(Phase.DECODE, DECODE_BATCH, decode_at_s))
    env.run()
    return ends


def test_a_static_split_runs_each_phase_on_its_share():
    ends = timeline(COMPUTE_BOUND, create_policy("split", "static", {"prefill_share": 0.5}))
    assert ends == {"prefill": pytest.approx(2.0), "decode": pytest.approx(0.6)}  # 1/0.5 s; decode saturated


def test_a_repartition_retimes_the_iteration_in_flight():
    # Alone, the prefill has the whole device (1 s of work); at 0.5 s the decode starts and the prefill
    # keeps half the SMs: its remaining half of the work takes 1 s more.
    ends = timeline(COMPUTE_BOUND, WholeDeviceWhenAlone(PolicyParams()))
    assert ends == {"prefill": pytest.approx(1.5), "decode": pytest.approx(0.6)}


def test_bandwidth_contention_slows_both_phases_while_they_overlap():
    # Both phases alone use the whole bandwidth: together, memory traffic takes twice as long. The
    # decode's 0.1 s becomes 0.2 s, during which the prefill does 0.1 s of its work; it ends at 1.1 s.
    ends = timeline(MEMORY_BOUND, create_policy("split", "static", {"prefill_share": 0.5}))
    assert ends == {"prefill": pytest.approx(1.1), "decode": pytest.approx(0.7)}


class Starving(SplitPolicy):
    Params = PolicyParams

    def prefill_share(self, split: SplitView, now: float) -> float:
        return 0.0


def test_a_split_that_starves_a_running_phase_breaks_the_contract():
    with pytest.raises(PolicyContractError, match="prefill needs a share above 0"):
        timeline(COMPUTE_BOUND, Starving(PolicyParams()))


# The two-loop replica ----------------------------------------------------------------------------

MODEL, HARDWARE, PLAN = load_model("llama-3.1-8b"), load_hardware("h100-sxm"), ParallelPlan(tp=1, pp=1, ep=1)
COST = ConstantCostModel(0.01, 1e-5)
SHARES = SmShareModel.for_model(COST, MODEL, HARDWARE, PLAN)


class CheckedReplica(IntraGpuReplica):
    """Asserts that no request is in both loops' iterations at once."""

    def __init__(self, *args, **kwargs) -> None:
        self.held: set[int] = set()
        super().__init__(*args, **kwargs)

    def prepare_step(self, decision, promoted):
        step = super().prepare_step(decision, promoted)
        ids = {r.request_id for r, _ in step.entries}
        assert not ids & self.held, f"requests {ids & self.held} in both loops at t={self.env.now}"
        self.held |= ids
        return step

    def _apply(self, entries, began_s):
        self.held -= {r.request_id for r, _ in entries}
        super()._apply(entries, began_s)


def serve(specs, split: str = "static", split_params: dict | None = None, num_blocks: int = 1000,
          block_size: int = 16, scheduler: dict | None = None, preemption: str = "recompute", host_blocks: int = 0):
    env = simpy.Environment()
    metrics = MetricsRecorder(record_iterations=True)
    requests = [Request(i, *spec) for i, spec in enumerate(specs)]
    rng = np.random.default_rng(0)
    cluster = Cluster(env, create_policy("router", "round_robin", {}, rng=rng), requests, metrics)
    victims = create_policy("preemption", preemption, {}, rng=rng)
    schedulers = tuple(create_policy("scheduler", "vllm", scheduler or {}, preemption=victims, rng=rng)
                       for _ in range(2))
    policy = create_policy("split", split, split_params or {}, rng=rng)
    setup = ReplicaSetup(BlockPool(num_blocks, block_size), BlockPool(host_blocks, block_size), 1_000_000, 1e-4)
    replica = CheckedReplica(env, 0, schedulers, COST, setup, metrics, cluster.next_arrival_s, cluster.request_done,
                             lambda queued: SharedDevice(env, SHARES, policy, queued))
    cluster.add_replica(replica)
    env.run()
    replica.check_drained()
    return requests, replica, metrics


def test_one_request_prefills_then_decodes_on_the_static_shares():
    (request,), replica, _ = serve([(0.0, 100, 3)], "static", {"prefill_share": 0.6})
    prefill_s = float(SHARES.work(BatchShape((100,), (0,))).seconds(0.6))
    decode_1 = float(SHARES.work(BatchShape((1,), (100,))).seconds(0.4))
    decode_2 = float(SHARES.work(BatchShape((1,), (101,))).seconds(0.4))
    assert request.first_token_s == pytest.approx(prefill_s)
    assert request.finish_s == pytest.approx(prefill_s + decode_1 + decode_2)
    assert (replica.prefill.num_iterations, replica.decode.num_iterations) == (1, 2)


def test_decodes_go_on_while_a_long_prompt_prefills():
    # A decodes while B's long prompt runs: A's tokens keep coming at the decode loop's pace.
    (a, b), replica, _ = serve([(0.0, 16, 40), (0.05, 8000, 2)], "static", {"prefill_share": 0.6},
                               scheduler={"max_num_batched_tokens": 8192})
    assert a.first_token_s < b.arrival_s < b.first_token_s < a.finish_s
    b_prefill_s = b.first_token_s - b.arrival_s
    assert a.max_tbt_s < b_prefill_s / 2
    assert replica.device.stats.both_busy_s > 0


def test_a_split_run_repeats_exactly():
    specs = [(0.0, 300, 20), (0.01, 2000, 5), (0.02, 50, 30), (0.3, 900, 10)]
    runs = [serve(specs, "proactive", num_blocks=200) for _ in range(2)]
    (first, replica, _), (second, again, _) = runs
    assert [(r.first_token_s, r.finish_s, r.max_tbt_s) for r in first] == [
        (r.first_token_s, r.finish_s, r.max_tbt_s) for r in second]
    assert replica.device.stats == again.device.stats


workloads = st.lists(st.tuples(st.floats(0, 1.0), st.integers(1, 300), st.integers(1, 40)), min_size=1,
                     max_size=15).map(sorted)


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(workloads, st.sampled_from(["static", "proactive"]), st.integers(4, 60), st.sampled_from([1, 4, 16]),
       st.integers(8, 512), st.sampled_from(["recompute", "swap"]))
def test_every_split_run_keeps_the_invariants(specs, split, num_blocks, block_size, budget, preemption):
    requests, replica, metrics = serve(specs, split, num_blocks=num_blocks, block_size=block_size,
                                       scheduler={"max_num_batched_tokens": budget, "max_num_seqs": 8},
                                       preemption=preemption, host_blocks=num_blocks)
    for request in requests:
        assert request.state in (RequestState.FINISHED, RequestState.REJECTED)
    finished = [r for r in requests if r.state is RequestState.FINISHED]
    for request in finished:
        assert request.num_generated == request.output_tokens
        assert request.arrival_s <= request.first_scheduled_s <= request.first_token_s <= request.finish_s
    for pool in (replica.kv, replica.host):
        pool.check_conservation()
        assert pool.num_used_blocks == 0
    series = metrics.replica_series()
    assert (series["kv_used_blocks"] <= series["kv_total_blocks"]).all()
    assert series["time_s"].is_monotonic_increasing
    gaps, weights = metrics.token_gaps()
    assert weights.sum() == sum(r.output_tokens - 1 for r in finished)
    assert np.all(gaps > 0)
    stats = replica.device.stats
    assert 0 <= stats.share_s <= stats.busy_s + 1e-9 and stats.both_busy_s <= stats.busy_s + 1e-9

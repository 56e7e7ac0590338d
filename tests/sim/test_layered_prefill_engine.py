"""The layered_prefill scheduler in the engine: exact timelines, stall-free decodes, the contract."""
import pytest

from servesim.hwmodels import ConstantCostModel, LayerSlice
from servesim.hwmodels.layer_slices import LayerSliceCostModel
from servesim.policies import ScheduleDecision
from servesim.policies.contract import PolicyContractError
from servesim.policies.schedulers.orca import OrcaSchedulerPolicy
from tests.sim.engine_harness import run_engine

STEP = ConstantCostModel(0.01)
LAYERED = {"num_layer_groups": 4}


def layered_run(specs, **kwargs):
    return run_engine(specs, LayerSliceCostModel(STEP, num_layers=8), scheduler=LAYERED,
                      scheduler_name="layered_prefill", record_iterations=True, **kwargs)


def test_a_prompt_takes_one_iteration_per_layer_group_and_decodes_never_wait():
    run = layered_run([(0.0, 100, 3), (0.005, 50, 2)])
    first, second = run.requests
    # A's four groups run 0.00-0.04; its decodes 0.04-0.06 run beside B's groups (0.04-0.08).
    assert first.first_token_s == pytest.approx(0.04)
    assert first.finish_s == pytest.approx(0.06)
    assert first.max_tbt_s == pytest.approx(0.01)
    assert second.first_scheduled_s == pytest.approx(0.04)
    assert second.first_token_s == pytest.approx(0.08)
    assert second.finish_s == pytest.approx(0.09)
    assert run.metrics.iterations()["num_prefill_tokens"].sum() == 100 + 50


def test_a_prompt_of_fewer_tokens_than_groups_takes_one_group_per_token():
    run = layered_run([(0.0, 1, 2), (0.0, 2, 2)])
    assert [r.first_token_s for r in run.requests] == pytest.approx([0.01, 0.03])


def test_fast_forward_gives_the_same_timeline_as_stepping():
    specs = [(0.01 * i, 40 + 13 * i, 5 + i) for i in range(12)]
    stepped = layered_run(specs, fast_forward=False)
    forwarded = layered_run(specs, fast_forward=True)
    for a, b in zip(stepped.requests, forwarded.requests, strict=True):
        assert (a.first_token_s, a.finish_s) == pytest.approx((b.first_token_s, b.finish_s))


def test_every_request_finishes_under_memory_pressure():
    specs = [(0.0, 300, 40) for _ in range(8)]
    run = layered_run(specs, num_blocks=60, block_size=16)
    assert all(r.state.value == "finished" for r in run.requests)
    assert sum(r.num_preemptions for r in run.requests) > 0


def test_slices_from_a_scheduler_that_does_not_declare_them_break_its_contract(monkeypatch):
    plain = OrcaSchedulerPolicy.schedule

    def schedule(self, replica, now):
        decision = plain(self, replica, now)
        for request, num_new in decision.scheduled:
            decision.layer_slices[request.request_id] = LayerSlice(num_new, 0, 0, 2)
        return decision

    monkeypatch.setattr(OrcaSchedulerPolicy, "schedule", schedule)
    with pytest.raises(PolicyContractError, match="uses_layer_slices"):
        run_engine([(0.0, 10, 2)], STEP, scheduler_name="orca")


def test_a_slice_for_a_request_not_scheduled_breaks_the_contract(monkeypatch):
    from servesim.policies.schedulers.layered_prefill import LayeredPrefillSchedulerPolicy

    def schedule(self, replica, now):
        decision = ScheduleDecision()
        decision.layer_slices[12345] = LayerSlice(5, 0, 0, 2)
        return decision

    monkeypatch.setattr(LayeredPrefillSchedulerPolicy, "schedule", schedule)
    with pytest.raises(PolicyContractError, match="not scheduled"):
        layered_run([(0.0, 10, 2)])

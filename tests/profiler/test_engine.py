"""The reference engine: real forward passes under the simulator's own scheduler."""
from itertools import pairwise

import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from servesim.hwmodels import load_model  # noqa: E402
from servesim.profiler.serving import requests_from_workload, run_engine  # noqa: E402
from servesim.sim.engine.request import RequestState  # noqa: E402
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
    assert all(len(r.token_times_s) == r.output_tokens and r.state is RequestState.FINISHED for r in requests)
    assert all(r.num_blocks == 0 for r in requests)
    assert all(it.end_s > it.start_s for it in iterations)
    assert all(a.end_s <= b.start_s for a, b in pairwise(iterations))
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
    assert real == list(zip(simulated["batch_size"], simulated["num_tokens"], strict=True))


def engine(scheduler, num_blocks=32):
    from servesim.profiler.engine import ReferenceEngine
    from servesim.profiler.model import ReferenceModel

    model = ReferenceModel(SPEC, torch.device("cpu"), torch.bfloat16, num_blocks, 16, 0)
    return ReferenceEngine(model, scheduler, num_blocks, SPEC.max_position_embeddings)


def vllm_policy():
    from servesim.policies import create_policy

    return create_policy("scheduler", "vllm", {"max_num_batched_tokens": 64},
                         preemption=create_policy("preemption", "recompute", {}))


def requests(prompts, output_tokens=3):
    from servesim.profiler.engine import EngineRequest

    return [EngineRequest(i, 0.0, p, output_tokens, token_ids=[1] * p) for i, p in enumerate(prompts)]


def test_the_scheduler_sees_read_only_views_of_the_engine():
    from servesim.sim.engine.views import ReplicaView, RequestView

    policy, seen = vllm_policy(), []
    original = policy.schedule

    def schedule(replica, now):
        seen.append((type(replica), {type(r) for r in [*replica.waiting, *replica.running]}))
        return original(replica, now)

    policy.schedule = schedule
    engine(policy).serve(requests([20, 30]))
    assert seen and all(kind is ReplicaView and kinds <= {RequestView} for kind, kinds in seen)


def _twice(decision):
    decision.scheduled.append(decision.scheduled[0])


def _write(decision):
    decision.scheduled[0][0].num_computed_tokens = 5


def _too_many(decision):
    view, _ = decision.scheduled[0]
    decision.scheduled[0] = (view, view.num_tokens + 1)


@pytest.mark.parametrize(("transform", "message"), [
    (_twice, "scheduled twice"), (_write, "read-only"), (_too_many, "new tokens; it must be an integer from 1 to 20"),
])
def test_a_broken_decision_stops_the_engine_as_it_stops_the_simulator(transform, message):
    from servesim.policies.contract import PolicyContractError

    policy = vllm_policy()
    original = policy.schedule

    def schedule(replica, now):
        decision = original(replica, now)
        transform(decision)
        return decision

    policy.schedule = schedule
    with pytest.raises(PolicyContractError, match=f"scheduler.schedule at simulated t=.*{message}"):
        engine(policy).serve(requests([20]))


def test_scheduling_more_than_the_free_memory_is_a_contract_error():
    from servesim.policies import ScheduleDecision
    from servesim.policies.contract import PolicyContractError

    policy = vllm_policy()
    policy.schedule = lambda replica, now: ScheduleDecision(scheduled=[(r, r.num_tokens) for r in replica.waiting])
    with pytest.raises(PolicyContractError, match="needs 3 more blocks when 2 of 4 are free"):
        engine(policy, num_blocks=4).serve(requests([30, 33]))


def test_admission_errors_are_asked_with_views_and_reject_the_request():
    from servesim.sim.engine.views import RequestView

    policy, asked = vllm_policy(), []

    def admission_error(view):
        asked.append(type(view))
        return "prompt over 25 tokens" if view.prompt_tokens > 25 else None

    policy.admission_error = admission_error
    served = requests([20, 30])
    engine(policy).serve(served)
    assert asked == [RequestView, RequestView]
    assert [(r.state, r.reject_reason) for r in served] == [
        (RequestState.FINISHED, ""), (RequestState.REJECTED, "prompt over 25 tokens")]
    assert len(served[0].token_times_s) == 3 and not served[1].token_times_s

"""The plug-in contract: a policy that breaks it stops the run with one paragraph, never a traceback or a hang.

Each hostile policy below is registered in a sandboxed registry and run through `simrun run`.
The message must name the policy (registered name and class), the hook, the simulated time
and what was wrong; the run exits 2 and writes nothing. Grouped by kind: wrong decisions,
writes to read-only views, exceptions inside policies, the other hooks, stuck policies, and
the goodput search's arguments.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from servesim.policies import (
    EvictionPolicy,
    LengthPredictor,
    PreemptionPolicy,
    RouterPolicy,
    ScheduleDecision,
    registry,
)
from servesim.policies.schedulers.vllm import VllmSchedulerPolicy
from servesim.sim.engine import replica as replica_module
from tests.bad_inputs.harness import Outcome, assert_user_error, simrun_in_process

BASE: dict[str, Any] = {
    "name": "contract",
    "model": "llama-3.1-8b",
    "hardware": "h100-sxm",
    "cost_model": {"kind": "constant", "iteration_s": 0.01, "per_token_s": 0.0001},
    "memory": {"block_size": 16, "num_kv_blocks": 200},
    "workload": {
        "arrival": {"process": "constant", "rate": 20.0},
        "prompt_tokens": {"dist": "fixed", "value": 40},
        "output_tokens": {"dist": "fixed", "value": 6},
        "num_requests": 6,
    },
    "output": {"plots": False},
}


@pytest.fixture(autouse=True)
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Hostile policies are registered in a copy of the registry, dropped after each test."""
    registry.all_policies()
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    yield


def simrun(tmp_path: Path, capsys: pytest.CaptureFixture, *extra: str, **sections: Any) -> Outcome:
    config = {**BASE, **sections}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    outcome = simrun_in_process(["run", str(path), "-o", str(tmp_path / "out"), "--no-progress", *extra], capsys)
    if outcome.code == 2:
        assert not (tmp_path / "out").exists()
    return outcome


def scheduler(name: str, schedule: Callable[[Any, Any, float], ScheduleDecision], **methods: Any) -> dict:
    """Register a scheduler whose `schedule(self, replica, now)` is `schedule`; returns its config section."""
    cls = type("Hostile", (VllmSchedulerPolicy,), {"schedule": schedule, "__module__": __name__, **methods})
    registry.register("scheduler", name)(cls)
    return {"name": name}


def vllm(self: Any, replica: Any, now: float) -> ScheduleDecision:
    return VllmSchedulerPolicy.schedule(self, replica, now)


# Decisions the engine cannot apply --------------------------------------------------------------

def _first_waiting(transform: Callable[[Any, Any, ScheduleDecision], None]) -> Callable:
    def schedule(self: Any, replica: Any, now: float) -> ScheduleDecision:
        decision = vllm(self, replica, now)
        if replica.waiting:
            transform(replica, replica.waiting[0], decision)
        return decision
    return schedule


class Impostor:
    request_id = 0
    num_tokens = 40
    num_computed_tokens = 0


BAD_DECISIONS = {
    "not_a_decision": (lambda self, replica, now: [], "returned list, not a ScheduleDecision"),
    "impostor": (lambda self, replica, now: ScheduleDecision(scheduled=[(Impostor(), 1)]), "not a request view"),
    "twice": (_first_waiting(lambda r, w, d: d.scheduled.append((w, 1))), "scheduled twice"),
    "zero_tokens": (_first_waiting(lambda r, w, d: d.scheduled.__setitem__(0, (w, 0))), "0 new tokens"),
    "float_tokens": (_first_waiting(lambda r, w, d: d.scheduled.__setitem__(0, (w, 2.0))), "2.0 new tokens"),
    "bool_tokens": (_first_waiting(lambda r, w, d: d.scheduled.__setitem__(0, (w, True))), "True new tokens"),
    "too_many_tokens": (_first_waiting(lambda r, w, d: d.scheduled.__setitem__(0, (w, 41))), "from 1 to 40"),
    "preempt_waiting": (_first_waiting(lambda r, w, d: d.preempted.append(w)), "which is not running"),
    "bad_padding": (_first_waiting(lambda r, w, d: d.padding.append((0, 5))), "padding entry (0, 5)"),
    "resume_nothing": (lambda self, replica, now: ScheduleDecision(resume="it"), "not one of the replica's suspended"),
    "wake_now": (lambda self, replica, now: ScheduleDecision(wake_at=now), "strictly after now"),
    "wake_nan": (lambda self, replica, now: ScheduleDecision(wake_at=math.nan), "wake_at=nan"),
    "wake_inf": (lambda self, replica, now: ScheduleDecision(wake_at=math.inf), "wake_at=inf"),
    "wake_past": (lambda self, replica, now: ScheduleDecision(wake_at=now - 1), "strictly after now"),
    "scheduled_not_list": (lambda self, replica, now: ScheduleDecision(scheduled=None),
                           "decision.scheduled is NoneType"),
}


@pytest.mark.parametrize("case", sorted(BAD_DECISIONS))
def test_a_decision_the_engine_cannot_apply_names_the_policy_hook_and_time(tmp_path, capsys, case):
    schedule, problem = BAD_DECISIONS[case]
    section = scheduler(f"bad_{case}", schedule)
    outcome = simrun(tmp_path, capsys, scheduler=section)
    assert_user_error(outcome, f"scheduler policy 'bad_{case}'", "Hostile", "scheduler.schedule", "simulated t=",
                      problem)


def test_tokens_over_the_schedulers_own_budget_are_refused(tmp_path, capsys):
    def greedy(self, replica, now):
        return ScheduleDecision(scheduled=[(r, r.num_tokens - r.num_computed_tokens) for r in replica.waiting])

    outcome = simrun(tmp_path, capsys, scheduler={**scheduler("greedy", greedy), "max_num_batched_tokens": 64},
                     workload={**BASE["workload"], "arrival": {"process": "constant", "rate": 1e6}})
    assert_user_error(outcome, "'greedy'", "over its max_num_batched_tokens of 64")


def test_more_requests_than_max_num_seqs_are_refused(tmp_path, capsys):
    def greedy(self, replica, now):
        return ScheduleDecision(scheduled=[(r, 1) for r in replica.waiting])

    outcome = simrun(tmp_path, capsys, scheduler={**scheduler("crowd", greedy), "max_num_seqs": 2},
                     workload={**BASE["workload"], "arrival": {"process": "constant", "rate": 1e6}})
    assert_user_error(outcome, "'crowd'", "over its max_num_seqs of 2")


def test_scheduling_more_than_the_free_kv_memory_is_refused(tmp_path, capsys):
    def careless(self, replica, now):
        return ScheduleDecision(scheduled=[(r, r.num_tokens - r.num_computed_tokens) for r in replica.waiting[:1]]
                                + [(r, r.num_tokens - r.num_computed_tokens) for r in replica.running])

    outcome = simrun(tmp_path, capsys, scheduler=scheduler("careless", careless),
                     memory={"block_size": 16, "num_kv_blocks": 3})
    assert_user_error(outcome, "'careless'", "more than the free kv memory", "blocks")


def test_preempting_and_scheduling_one_request_together_is_refused(tmp_path, capsys):
    def flip(self, replica, now):
        decision = vllm(self, replica, now)
        if replica.running:
            decision.preempted.append(replica.running[0])
            decision.scheduled = [(replica.running[0], 1)]
        return decision

    outcome = simrun(tmp_path, capsys, scheduler=scheduler("flip", flip))
    assert_user_error(outcome, "'flip'", "preempted and scheduled in one decision")


# Views are read-only ----------------------------------------------------------------------------

WRITES = {
    "output_tokens": lambda replica: setattr(replica.waiting[0], "output_tokens", 1),
    "num_computed_tokens": lambda replica: setattr(replica.waiting[0], "num_computed_tokens", 40),
    "state": lambda replica: setattr(replica.waiting[0], "state", "finished"),
    "waiting_list": lambda replica: setattr(replica, "waiting", []),
    "waiting_clear": lambda replica: replica.waiting.clear(),
    "kv_allocate": lambda replica: replica.kv.allocate(0, 1),
    "kv_block_size": lambda replica: setattr(replica.kv, "block_size", 1),
}


@pytest.mark.parametrize("case", sorted(WRITES))
def test_a_policy_cannot_change_engine_state_through_its_views(tmp_path, capsys, case):
    def meddle(self, replica, now):
        if replica.waiting:
            WRITES[case](replica)
        return vllm(self, replica, now)

    outcome = simrun(tmp_path, capsys, scheduler=scheduler(f"meddle_{case}", meddle))
    assert_user_error(outcome, f"'meddle_{case}'", "scheduler.schedule", "AttributeError", "read-only views")


# Exceptions inside policies ---------------------------------------------------------------------

def crash(self, replica, now):
    return 1 / 0


def test_an_exception_inside_a_policy_is_one_paragraph_with_the_original_under_debug(tmp_path, capsys):
    section = scheduler("crashing", crash)
    outcome = simrun(tmp_path, capsys, scheduler=section)
    assert_user_error(outcome, "scheduler policy 'crashing'", "scheduler.schedule", "simulated t=0.000000",
                      "ZeroDivisionError: division by zero", "in crash", "--debug")
    debug = simrun(tmp_path, capsys, "--debug", scheduler=section)
    assert debug.code == 2
    assert "ZeroDivisionError" in debug.stderr and "direct cause" in debug.stderr


def test_admission_error_must_not_raise_and_must_return_a_reason_or_none(tmp_path, capsys):
    outcome = simrun(tmp_path, capsys, scheduler=scheduler("gate", vllm, admission_error=lambda self, r: 7))
    assert_user_error(outcome, "'gate'", "scheduler.admission_error", "returned 7")
    outcome = simrun(tmp_path, capsys, scheduler=scheduler("gate2", vllm, admission_error=lambda self, r: r.nope))
    assert_user_error(outcome, "'gate2'", "scheduler.admission_error", "AttributeError")


def test_interrupt_must_answer_true_or_false(tmp_path, capsys):
    outcome = simrun(tmp_path, capsys, scheduler=scheduler("maybe", vllm, interrupt=lambda self, *args: "yes"),
                     workload={**BASE["workload"], "output_tokens": {"dist": "fixed", "value": 60}})
    assert_user_error(outcome, "'maybe'", "scheduler.interrupt", "returned 'yes'")


# The other hooks ---------------------------------------------------------------------------------

@pytest.mark.parametrize("answer", [2, -1, "0", True, 0.0])
def test_a_router_index_must_be_a_replica_index(tmp_path, capsys, answer):
    cls = type("Wayward", (RouterPolicy,), {"route": lambda self, request, replicas, now: answer})
    registry.register("router", "wayward")(cls)
    outcome = simrun(tmp_path, capsys, cluster={"replicas": 2, "router": {"name": "wayward"}})
    assert_user_error(outcome, "router policy 'wayward'", "router.route", f"returned {answer!r}", "from 0 to 1")


def test_a_preemption_mode_must_come_from_the_enum(tmp_path, capsys):
    cls = type("Stringly", (PreemptionPolicy,), {
        "select_victim": lambda self, candidates, now: candidates[-1],
        "mode": lambda self, victim, host, now: "swap",
    })
    registry.register("preemption", "stringly")(cls)
    outcome = simrun(tmp_path, capsys, preemption={"name": "stringly"}, memory={"block_size": 16, "num_kv_blocks": 8},
                     workload={**BASE["workload"], "arrival": {"process": "constant", "rate": 1e6},
                               "output_tokens": {"dist": "fixed", "value": 60}})
    assert_user_error(outcome, "preemption policy 'stringly'", "preemption.mode", "returned 'swap'", "PreemptionMode")


def test_a_victim_must_be_one_of_the_candidates(tmp_path, capsys):
    cls = type("Outsider", (PreemptionPolicy,), {"select_victim": lambda self, candidates, now: object()})
    registry.register("preemption", "outsider")(cls)
    outcome = simrun(tmp_path, capsys, preemption={"name": "outsider"}, memory={"block_size": 16, "num_kv_blocks": 8},
                     workload={**BASE["workload"], "arrival": {"process": "constant", "rate": 1e6},
                               "output_tokens": {"dist": "fixed", "value": 60}})
    assert_user_error(outcome, "preemption policy 'outsider'", "preemption.select_victim", "not one of the")


@pytest.mark.parametrize("prediction", [math.nan, math.inf, 0, -3.0, "long"])
def test_a_prediction_must_be_finite_and_positive(tmp_path, capsys, prediction):
    cls = type("Oracle2", (LengthPredictor,), {"predict": lambda self, request, replica, now: prediction})
    registry.register("predictor", "wild")(cls)
    outcome = simrun(tmp_path, capsys, scheduler={"name": "sjf", "predictor": {"name": "wild"}},
                     workload={**BASE["workload"], "arrival": {"process": "constant", "rate": 1e6}})
    assert_user_error(outcome, "predictor policy 'wild'", "predictor.predict", f"predicted {prediction!r}")


def test_an_eviction_key_that_raises_names_the_eviction_policy(tmp_path, capsys):
    cls = type("Keyless", (EvictionPolicy,), {"key": lambda self, block, now: block.missing})
    registry.register("eviction", "keyless")(cls)
    outcome = simrun(tmp_path, capsys, cache={"prefix_caching": True, "eviction": {"name": "keyless"}},
                     workload={**BASE["workload"], "shared_prefix": {"num_groups": 1, "tokens": 32}})
    assert_user_error(outcome, "eviction policy 'keyless'", "eviction.key", "AttributeError")


# Stuck policies -----------------------------------------------------------------------------------

def test_a_scheduler_that_never_schedules_is_reported_stuck(tmp_path, capsys):
    outcome = simrun(tmp_path, capsys, scheduler=scheduler("idle", lambda self, replica, now: ScheduleDecision()))
    assert_user_error(outcome, "'idle'", "stuck", "6 waiting", "could never finish")


def test_a_scheduler_that_wakes_forever_without_work_is_reported_stuck(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(replica_module, "MAX_IDLE_DECISIONS", 50)
    outcome = simrun(tmp_path, capsys,
                     scheduler=scheduler("insomniac", lambda self, replica, now: ScheduleDecision(wake_at=now + 1)))
    assert_user_error(outcome, "'insomniac'", "stuck", "50 decisions in a row computed no token")


def test_a_scheduler_that_only_preempts_is_reported_stuck(tmp_path, capsys):
    def evict_all(self, replica, now):
        if replica.running:
            return ScheduleDecision(preempted=list(replica.running))
        if any(r.num_preemptions for r in replica.waiting):
            return ScheduleDecision()
        return vllm(self, replica, now)

    outcome = simrun(tmp_path, capsys, scheduler=scheduler("evictor", evict_all))
    assert_user_error(outcome, "'evictor'", "stuck")


def test_padding_alone_forever_is_reported_stuck(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(replica_module, "MAX_IDLE_DECISIONS", 50)
    outcome = simrun(tmp_path, capsys,
                     scheduler=scheduler("pad", lambda self, r, now: ScheduleDecision(padding=[(1, 0)])))
    assert_user_error(outcome, "'pad'", "stuck")


def test_a_built_in_scheduler_that_can_never_admit_under_its_parameters_ends_with_a_clear_error(tmp_path, capsys):
    # Found by fuzzing: Orca reserving max_new_tokens outputs per request, more than the whole pool
    # holds, admits nothing and waits forever; this used to end in an engine invariant traceback.
    outcome = simrun(tmp_path, capsys, scheduler={"name": "orca", "max_new_tokens": 40},
                     memory={"block_size": 16, "num_kv_blocks": 4})
    assert_user_error(outcome, "scheduler policy 'orca'", "stuck", "6 waiting and 0 running",
                      "may never admit them with this KV pool")


# Registration and the goodput search ------------------------------------------------------------

def test_re_registering_the_same_class_replaces_it_and_a_different_class_is_refused():
    first = type("Cell", (VllmSchedulerPolicy,), {"__module__": "__main__"})
    second = type("Cell", (VllmSchedulerPolicy,), {"__module__": "__main__"})
    registry.register("scheduler", "cell")(first)
    registry.register("scheduler", "cell")(second)
    assert registry.get_policy("scheduler", "cell").cls is second
    other = type("Other", (VllmSchedulerPolicy,), {"__module__": "__main__"})
    with pytest.raises(registry.PolicyError, match="already registered by Cell"):
        registry.register("scheduler", "cell")(other)


GOODPUT_CASES = {
    "zero_tolerance": (["--tolerance", "0"], {"slo": {"ttft_s": 1.0}},
                       "tolerance (--tolerance) must be a finite number > 0"),
    "negative_tolerance": (["--tolerance", "-0.1"], {"slo": {"ttft_s": 1.0}}, "got -0.1"),
    "nan_tolerance": (["--tolerance", "nan"], {"slo": {"ttft_s": 1.0}}, "--tolerance"),
    "low_equals_high": (["--low", "2", "--high", "2"], {"slo": {"ttft_s": 1.0}}, "0 < low < high"),
    "low_above_high": (["--low", "3", "--high", "1"], {"slo": {"ttft_s": 1.0}}, "low=3.0, high=1.0"),
    "no_slo": ([], {}, "sets no slo"),
}


@pytest.mark.parametrize("case", sorted(GOODPUT_CASES))
def test_goodput_refuses_a_search_that_means_nothing_or_never_ends(tmp_path, capsys, case):
    args, sections, problem = GOODPUT_CASES[case]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**BASE, **sections}))
    outcome = simrun_in_process(["goodput", str(path), *args], capsys)
    assert_user_error(outcome, "goodput search", problem)
    assert "scale" not in outcome.stdout  # refused before the first probe

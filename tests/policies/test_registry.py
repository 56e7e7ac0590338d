"""The policy registry: registration by decorator and entry point, class checks, names and parameters."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import EntryPoint
from typing import Any

import numpy as np
import pytest
from pydantic import Field

from servesim.policies import (
    KINDS,
    PolicyError,
    PolicyParams,
    PreemptionPolicy,
    QueuePolicy,
    ScheduleDecision,
    SchedulerPolicy,
    all_policies,
    create_policy,
    get_policy,
    register,
    registry,
    validate_params,
)
from servesim.policies.predictors import NoisyOracleLengthPredictor


class ToyParams(PolicyParams):
    max_batch: int = Field(4, ge=1, description="most requests per batch")


class ToySchedulerPolicy(SchedulerPolicy):
    """Admit the first `max_batch` waiting requests whole.

    A second paragraph that the listing leaves out.
    """

    Params = ToyParams
    params: ToyParams

    def schedule(self, replica: Any, now: float) -> ScheduleDecision:
        head = list(replica.waiting)[: self.params.max_batch]
        return ScheduleDecision(scheduled=[(r, r.num_tokens) for r in head])


class OtherToySchedulerPolicy(ToySchedulerPolicy):
    """Another class, to collide with the first one's name."""


# Registration -----------------------------------------------------------------------------------

def test_the_decorator_registers_a_class_with_its_params_and_description(isolated_registry: dict) -> None:
    assert register("scheduler", "toy")(ToySchedulerPolicy) is ToySchedulerPolicy
    entry = get_policy("scheduler", "toy")
    assert (entry.cls, entry.params_model, entry.origin) == (ToySchedulerPolicy, ToyParams, "built-in")
    assert entry.description == "Admit the first `max_batch` waiting requests whole."
    assert entry.parameters() == {"max_batch": ("int", 4, "most requests per batch")}
    assert entry in all_policies() and "toy" in registry.policy_names("scheduler")
    preemption = create_policy("preemption", "recompute", {})
    policy = create_policy("scheduler", "toy", {"max_batch": 2}, preemption=preemption, rng=np.random.default_rng(1))
    assert isinstance(policy, ToySchedulerPolicy) and policy.params.max_batch == 2 and policy.preemption is preemption


def test_a_name_registered_twice_is_rejected_naming_both_classes(isolated_registry: dict) -> None:
    register("scheduler", "toy")(ToySchedulerPolicy)
    with pytest.raises(PolicyError, match=r"'toy' \(OtherToySchedulerPolicy, built-in\): the name is already "
                                          r"registered by ToySchedulerPolicy \(built-in\)"):
        register("scheduler", "toy")(OtherToySchedulerPolicy)
    with pytest.raises(PolicyError, match="already registered by VllmSchedulerPolicy"):
        register("scheduler", "vllm")(ToySchedulerPolicy)
    assert get_policy("scheduler", "toy").cls is ToySchedulerPolicy


def test_the_same_name_may_serve_two_kinds() -> None:
    assert get_policy("queue", "sjf").cls is not get_policy("scheduler", "sjf").cls


def test_an_unknown_kind_is_rejected(isolated_registry: dict) -> None:
    with pytest.raises(PolicyError, match="unknown policy kind; kinds are scheduler, queue"):
        register("batcher", "toy")(ToySchedulerPolicy)
    with pytest.raises(PolicyError, match="unknown policy kind 'batcher'"):
        get_policy("batcher", "toy")


def test_an_unknown_name_lists_the_valid_ones_with_a_suggestion() -> None:
    valid = ", ".join(registry.policy_names("scheduler"))
    with pytest.raises(PolicyError) as typo:
        get_policy("scheduler", "vlm")
    assert str(typo.value) == f"unknown scheduler policy 'vlm'; valid names: {valid}. Did you mean 'vllm'?"
    with pytest.raises(PolicyError) as unrelated:
        create_policy("router", "zzz", {})
    assert f"valid names: {', '.join(registry.policy_names('router'))}." in str(unrelated.value)
    assert "Did you mean" not in str(unrelated.value)


# Class checks -----------------------------------------------------------------------------------

class NoScheduleMethod:
    """Duck-typed, but without the method the engine calls."""

    Params = PolicyParams


class UnimplementedScheduler(SchedulerPolicy):
    """Inherits the abstract method without implementing it."""


class OneArgumentScheduler(SchedulerPolicy):
    def schedule(self, replica: Any) -> ScheduleDecision:  # type: ignore[override]
        return ScheduleDecision()


class ExtraRequiredArgumentScheduler(SchedulerPolicy):
    def schedule(self, replica: Any, now: float, budget: int) -> ScheduleDecision:  # type: ignore[override]
        return ScheduleDecision()


class KeywordOnlyScheduler(SchedulerPolicy):
    def schedule(self, replica: Any, *, now: float) -> ScheduleDecision:  # type: ignore[override]
        return ScheduleDecision()


class ShortModeSwapPolicy(PreemptionPolicy):
    def select_victim(self, candidates: Sequence[Any], now: float) -> Any:
        return candidates[-1]

    def mode(self, victim: Any) -> Any:  # type: ignore[override]
        return None


class ParamlessScheduler:
    def schedule(self, replica: Any, now: float) -> ScheduleDecision:
        return ScheduleDecision()


class DictParamsScheduler(ParamlessScheduler):
    Params = dict


@pytest.mark.parametrize("cls, problem", [
    (NoScheduleMethod, r"missing method schedule\(replica, now\) of the SchedulerPolicy interface"),
    (UnimplementedScheduler, "method schedule is not implemented"),
    (OneArgumentScheduler, r"method schedule\(self, replica: 'Any'\) -> 'ScheduleDecision' cannot be called as "
                           r"schedule\(self, replica, now\)"),
    (ExtraRequiredArgumentScheduler, r"method schedule\(.*budget: 'int'\) .* cannot be called"),
    (KeywordOnlyScheduler, r"method schedule\(self, replica: 'Any', \*, now: 'float'\) .* cannot be called"),
    (ParamlessScheduler, "needs a nested pydantic `Params` model"),
    (DictParamsScheduler, "needs a nested pydantic `Params` model"),
    (lambda replica, now: None, "expected a class, got function"),
], ids=["missing", "abstract", "too_few_arguments", "extra_required", "keyword_only", "no_params", "dict_params",
        "function"])
def test_a_bad_scheduler_class_fails_naming_itself_and_the_method(isolated_registry: dict, cls: Any,
                                                                  problem: str) -> None:
    with pytest.raises(PolicyError, match=r"^scheduler policy 'bad' \(.*, built-in\): " + problem):
        register("scheduler", "bad")(cls)
    assert ("scheduler", "bad") not in isolated_registry


def test_every_method_the_engine_calls_is_checked(isolated_registry: dict) -> None:
    with pytest.raises(PolicyError, match=r"'bad' \(ShortModeSwapPolicy.*method mode\(self, victim: 'Any'\) .* "
                                          r"cannot be called as mode\(self, victim, host, now\)"):
        register("preemption", "bad")(ShortModeSwapPolicy)


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_kind_requires_its_own_methods(isolated_registry: dict, kind: str) -> None:
    interface, methods = KINDS[kind]
    empty = type("EmptyPolicy", (), {"Params": PolicyParams})
    first = next(iter(methods))
    with pytest.raises(PolicyError, match=rf"{kind} policy 'empty' \(EmptyPolicy.*missing method {first}\("):
        register(kind, "empty")(empty)


class FlexibleQueuePolicy(QueuePolicy):
    """Signatures that accept the engine's call are fine: defaults, *args, **kwargs."""

    def key(self, request: Any, *args: Any, extra: int = 0, **kwargs: Any) -> Any:
        return request.arrival_s


def test_signatures_that_accept_the_call_pass(isolated_registry: dict) -> None:
    register("queue", "flexible")(FlexibleQueuePolicy)
    assert get_policy("queue", "flexible").cls is FlexibleQueuePolicy


# Entry points -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class FakeDistribution:
    name: str


@dataclass
class FakeEntryPoint:
    """What `importlib.metadata.entry_points` yields, loading a class without importing a module."""

    name: str
    target: Any
    dist: FakeDistribution | None = FakeDistribution("toy-plugins")

    @property
    def value(self) -> str:
        return f"toy_plugins:{getattr(self.target, '__name__', self.target)}"

    def load(self) -> Any:
        return self.target


@pytest.fixture
def plugins(isolated_registry: dict, monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, list]], None]:
    """Install fake entry points by group; the registry reads them again on its next use."""

    def install(groups: dict[str, list]) -> None:
        monkeypatch.setattr(registry, "entry_points", lambda group: groups.get(group, []))
        monkeypatch.setattr(registry, "_loaded", False)

    return install


def test_entry_points_register_plug_ins_of_every_group(plugins: Callable) -> None:
    plugins({"servesim.scheduler": [FakeEntryPoint("toy", ToySchedulerPolicy)],
             "servesim.queue": [FakeEntryPoint("flexible", FlexibleQueuePolicy)]})
    entry = get_policy("scheduler", "toy")
    assert entry.cls is ToySchedulerPolicy and entry.origin == "plug-in toy-plugins"
    assert get_policy("queue", "flexible").origin == "plug-in toy-plugins"
    assert get_policy("scheduler", "vllm").origin == "built-in"


def test_a_plug_in_may_not_take_a_built_in_name(plugins: Callable) -> None:
    plugins({"servesim.scheduler": [FakeEntryPoint("vllm", ToySchedulerPolicy)]})
    with pytest.raises(PolicyError, match=r"scheduler policy 'vllm' \(ToySchedulerPolicy, plug-in toy-plugins\): "
                                          r"the name is already registered by VllmSchedulerPolicy \(built-in\)"):
        all_policies()


def test_a_plug_in_that_fails_its_check_names_its_distribution(plugins: Callable) -> None:
    plugins({"servesim.scheduler": [FakeEntryPoint("one_arg", OneArgumentScheduler)]})
    with pytest.raises(PolicyError, match=r"'one_arg' \(OneArgumentScheduler, plug-in toy-plugins\): method schedule"):
        get_policy("scheduler", "vllm")


def test_a_broken_entry_point_names_itself_and_the_import_error(plugins: Callable) -> None:
    broken = EntryPoint("broken", "servesim_no_such_plugin.module:Scheduler", "servesim.scheduler")
    plugins({"servesim.scheduler": [broken]})
    with pytest.raises(PolicyError) as exc:
        registry.policy_names("scheduler")
    assert str(exc.value) == (
        "scheduler policy 'broken' (plug-in servesim_no_such_plugin.module:Scheduler): cannot load "
        "servesim_no_such_plugin.module:Scheduler: ModuleNotFoundError: No module named 'servesim_no_such_plugin'"
    )


def test_an_entry_point_that_raises_while_loading_names_itself(plugins: Callable) -> None:
    class Exploding(FakeEntryPoint):
        def load(self) -> Any:
            raise RuntimeError("needs CUDA")

    plugins({"servesim.router": [Exploding("gpu_router", "GpuRouter")]})
    with pytest.raises(PolicyError, match=r"router policy 'gpu_router' \(plug-in toy-plugins\): cannot load "
                                          r"toy_plugins:GpuRouter: RuntimeError: needs CUDA"):
        all_policies()


# Parameters -------------------------------------------------------------------------------------

def test_unknown_parameters_are_errors_with_a_suggestion() -> None:
    with pytest.raises(PolicyError) as typo:
        validate_params("scheduler", "vllm", {"max_num_seq": 4})
    assert str(typo.value) == "scheduler policy 'vllm': max_num_seq: unknown parameter; did you mean 'max_num_seqs'?"
    with pytest.raises(PolicyError, match="zzz: unknown parameter; its parameters are: victim$"):
        validate_params("preemption", "recompute", {"zzz": 1})
    with pytest.raises(PolicyError, match="zzz: unknown parameter; its parameters are: none"):
        validate_params("router", "round_robin", {"zzz": 1})


def test_every_bad_parameter_is_reported_at_once() -> None:
    with pytest.raises(PolicyError) as exc:
        validate_params("scheduler", "vllm",
                        {"max_num_batched_tokens": -5, "chunked_prefill": "maybe", "max_num_seq": 1})
    message = str(exc.value)
    assert "max_num_batched_tokens: Input should be greater than or equal to 1 (got -5)" in message
    assert "chunked_prefill: Input should be a valid boolean" in message and "(got 'maybe')" in message
    assert "max_num_seq: unknown parameter" in message


def test_params_are_typed_and_defaulted() -> None:
    params = validate_params("scheduler", "vllm", {"max_num_seqs": "64"})
    assert params.max_num_seqs == 64 and params.max_num_batched_tokens == 8192
    with pytest.raises(PolicyError, match="victim: Input should be 'newest', 'lowest_priority' or 'largest'"):
        validate_params("preemption", "swap", {"victim": "oldest"})


def test_nested_policy_references_are_validated_and_built() -> None:
    params = validate_params("scheduler", "sjf", {"predictor": {"name": "noisy_oracle", "error": 0.3}})
    assert params.predictor.name == "noisy_oracle" and params.predictor.params() == {"error": 0.3}
    scheduler = create_policy("scheduler", "sjf", {"predictor": {"name": "noisy_oracle", "error": 0.3}},
                              preemption=create_policy("preemption", "recompute", {}))
    predictor = scheduler.queue.predictor
    assert isinstance(predictor, NoisyOracleLengthPredictor) and predictor.params.error == 0.3
    assert validate_params("scheduler", "sjf", {}).predictor.name == "oracle"


@pytest.mark.parametrize("params, problem", [
    ({"predictor": {"name": "noisy"}}, "predictor: unknown predictor policy 'noisy'; valid names: class_empirical, "
                                       "noisy_oracle, oracle"),
    ({"predictor": {"name": "noisy_oracle", "error": -1}}, "predictor: predictor policy 'noisy_oracle': error: Input "
                                                           "should be greater than or equal to 0 (got -1)"),
    ({"predictor": {"name": "noisy_oracle", "eror": 0.1}}, "predictor: predictor policy 'noisy_oracle': eror: unknown "
                                                           "parameter; did you mean 'error'?"),
    ({"predictor": "oracle"}, "predictor: Input should be a valid dictionary"),
])
def test_a_bad_nested_reference_fails_naming_the_path(params: dict, problem: str) -> None:
    with pytest.raises(PolicyError) as exc:
        validate_params("scheduler", "sjf", params)
    assert str(exc.value).startswith(f"scheduler policy 'sjf': {problem}")


def test_references_nest_two_levels_deep() -> None:
    ok = validate_params("scheduler", "vllm", {"queue": {"name": "sjf", "predictor": {"name": "noisy_oracle"}}})
    assert ok.queue.params() == {"predictor": {"name": "noisy_oracle"}}
    with pytest.raises(PolicyError) as exc:
        validate_params("scheduler", "vllm", {"queue": {"name": "sjf", "predictor": {"name": "oracl"}}})
    assert str(exc.value) == (
        "scheduler policy 'vllm': queue: queue policy 'sjf': predictor: unknown predictor policy 'oracl'; "
        "valid names: class_empirical, noisy_oracle, oracle. Did you mean 'oracle'?"
    )


# Listing ----------------------------------------------------------------------------------------

def _listing(capsys: pytest.CaptureFixture[str]) -> str:
    from servesim.sim.cli import main

    assert main(["list"]) == 0
    return capsys.readouterr().out


def test_simrun_list_shows_every_policy_by_kind_with_its_parameters(capsys: pytest.CaptureFixture[str]) -> None:
    lines = _listing(capsys).splitlines()
    for entry in all_policies():
        kind_line = lines.index(f"  {entry.kind}:")
        row = next(i for i, line in enumerate(lines) if line.split()[:1] == [entry.name] and i > kind_line)
        assert lines[row].endswith(entry.description)
        shown = lines[row + 1: row + 1 + len(entry.parameters())]
        for line, (key, (type_name, default, description)) in zip(shown, entry.parameters().items(), strict=True):
            assert line.strip() == f"{key} ({type_name}, default {default!r}): {description}"
    text = "\n".join(lines)
    assert "victim (VictimOrder, default 'newest')" in text
    assert "predictor (PredictorRef, default {'name': 'oracle'})" in text
    assert "queue (QueueRef, default {'name': 'fcfs'})" in text
    assert "PydanticUndefined" not in text


def test_simrun_list_names_the_distribution_of_a_plug_in(plugins: Callable,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    plugins({"servesim.scheduler": [FakeEntryPoint("toy", ToySchedulerPolicy)]})
    listing = _listing(capsys)
    assert "Admit the first `max_batch` waiting requests whole. [plug-in toy-plugins]" in listing
    assert "max_batch (int, default 4): most requests per batch" in listing


def test_parameters_are_validated_once_and_the_frozen_model_shared(monkeypatch):
    from servesim.policies import validate_params
    from servesim.policies.schedulers.vllm import VllmSchedulerPolicy

    calls = []
    original = VllmSchedulerPolicy.Params.model_validate.__func__

    def counting(cls, data, *args, **kwargs):
        calls.append(data)
        return original(cls, data, *args, **kwargs)

    monkeypatch.setattr(VllmSchedulerPolicy.Params, "model_validate", classmethod(counting))
    params = {"max_num_seqs": 4321, "queue": {"name": "fcfs"}}
    first = validate_params("scheduler", "vllm", params)
    again = validate_params("scheduler", "vllm", dict(reversed(params.items())))
    assert first is again and len(calls) == 1
    assert validate_params("scheduler", "vllm", {"max_num_seqs": 8765}).max_num_seqs == 8765 and len(calls) == 2

"""The plug-in contract's error: a policy broke a rule or raised, and the run stops.

The engine checks every answer a policy gives before applying it (`sim.engine.decision_check`)
and wraps every exception raised inside policy code. Either way the user sees one paragraph
naming the policy (its registered name and class), the hook the engine called, the simulated
time and what was wrong; the original exception stays attached as `__cause__` (`--debug`).
"""
from __future__ import annotations

import functools
import math
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np

from servesim.policies.errors import PolicyError


class PolicyContractError(PolicyError):
    """A policy returned something the engine cannot apply, raised, or made no progress.

    Its only argument is the message (SimPy re-raises a process's exception as a copy built
    from its args); build it with `contract_violation`."""


def contract_violation(policy: Any, hook: str, now: float, problem: str) -> PolicyContractError:
    """The error naming the policy, the hook the engine called, the simulated time and the problem."""
    return PolicyContractError(f"{describe_policy(policy)}, {hook} at simulated t={now:.6f} s: {problem}")


def describe_policy(policy: Any) -> str:
    """`scheduler policy 'vllm' (servesim.policies.schedulers.vllm.VllmScheduler)`."""
    from servesim.policies.registry import registered_name

    cls = type(policy)
    where = f"{cls.__module__}.{cls.__qualname__}"
    found = registered_name(cls)
    return f"{found[0]} policy {found[1]!r} ({where})" if found else f"policy {where}"


def policy_raised(policy: Any, hook: str, now: float, exc: BaseException) -> PolicyContractError:
    """The contract error for an exception raised inside policy code, naming where it was raised."""
    if isinstance(exc, PolicyContractError):
        return exc
    engine = sys.modules.get("servesim.sim.engine")
    engine_dir = os.path.dirname(engine.__file__ or "") if engine else None
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if os.path.dirname(f.filename) != engine_dir]
    place = f" (in {frames[-1].name}, {os.path.basename(frames[-1].filename)}:{frames[-1].lineno})" if frames else ""
    read_only = isinstance(exc, AttributeError) and any(
        words in str(exc) for words in ("read-only", "setter", "no attribute"))
    hint = " (policies receive read-only views: keep your own state in the policy)" if read_only else ""
    return contract_violation(
        policy, hook, now,
        f"the policy raised {type(exc).__name__}: {exc}{place}{hint}; run with --debug for its traceback",
    )


def is_count(value: Any) -> bool:
    """An integer that is not a bool (numpy integers included)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def is_finite_number(value: Any) -> bool:
    try:
        return not isinstance(value, bool) and math.isfinite(value)
    except TypeError:
        return False


def checked_prediction(predict: Callable[..., float]) -> Callable[..., float]:
    """`predict` whose answer must be a finite number > 0 (exceptions name the predictor)."""

    @functools.wraps(predict)
    def checked(self: Any, request: Any, replica: Any, now: float) -> float:
        try:
            value = predict(self, request, replica, now)
        except Exception as exc:
            raise policy_raised(self, "predictor.predict", now, exc) from exc
        if not (is_finite_number(value) and value > 0):
            raise contract_violation(self, "predictor.predict", now,
                                     f"predicted {value!r} for request {request.request_id}; "
                                     "a prediction must be a finite number > 0")
        return value

    return checked


def checked_victim(select_victim: Callable[..., Any]) -> Callable[..., Any]:
    """`select_victim` whose answer must be one of the candidates (exceptions name the policy)."""

    @functools.wraps(select_victim)
    def checked(self: Any, candidates: Any, now: float) -> Any:
        try:
            victim = select_victim(self, candidates, now)
        except Exception as exc:
            raise policy_raised(self, "preemption.select_victim", now, exc) from exc
        if not any(victim is candidate for candidate in candidates):
            raise contract_violation(self, "preemption.select_victim", now,
                                     f"returned {victim!r}, which is not one of the {len(candidates)} candidates")
        return victim

    return checked

"""One device shared by a prefill and a decode loop, each on its share of the SMs.

Each loop hands the device one iteration at a time and waits for it. An iteration's duration
follows the SM-share model (`hwmodels.sm_share`) at the current split, with bandwidth
contention while the other loop also runs; the device tracks how much of each iteration is
done, so that when the split changes (the split policy is asked at the start of every
iteration of either loop) or the other loop starts or stops, the rest of the iteration runs at
the new speed, as a processor-sharing server does. Nothing here touches requests.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np
import simpy

from servesim.hwmodels import BatchShape
from servesim.hwmodels.sm_share import PhaseWork, SmShareModel
from servesim.policies.contract import contract_violation, is_finite_number, policy_raised
from servesim.policies.intra_gpu import SplitPolicy, SplitView

HOOK = "split.prefill_share"
INITIAL_PREFILL_SHARE = 0.5
"""The split before the policy is first asked (the view shows it as the current share)."""


class Phase(Enum):
    PREFILL = "prefill"
    DECODE = "decode"


@dataclass(eq=False, slots=True)
class PhaseIteration:
    """An iteration on the device: its work, how much of it is done, and its current duration."""

    phase: Phase
    work: PhaseWork
    size: int
    """New tokens of a prefill batch, requests of a decode batch (what the split policy sees)."""
    done: simpy.Event
    progress: float = 0.0
    seconds: float = math.inf
    """Its whole duration at the current split and contention."""


@dataclass(slots=True)
class SplitStats:
    """What the summary reports of a shared device."""

    busy_s: float = 0.0
    share_s: float = 0.0
    """Integral of the prefill share over the time either loop ran."""
    both_busy_s: float = 0.0
    num_repartitions: int = 0
    max_contention: float = 1.0
    contention_s: float = 0.0
    """Integral of the contention factor over the time both loops ran."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "mean_prefill_share": self.share_s / self.busy_s if self.busy_s else None,
            "busy_s": self.busy_s,
            "both_busy_s": self.both_busy_s,
            "num_repartitions": self.num_repartitions,
            "mean_contention": self.contention_s / self.both_busy_s if self.both_busy_s else 1.0,
            "max_contention": self.max_contention,
        }


@dataclass(eq=False)
class SharedDevice:
    """Runs the two loops' iterations concurrently at the split the policy chooses."""

    env: simpy.Environment
    model: SmShareModel
    policy: SplitPolicy
    queued_prefill_tokens: Any
    """() -> int: prompt tokens not yet computed (the replica's count, for the policy's view)."""
    prefill_share: float = INITIAL_PREFILL_SHARE
    stats: SplitStats = field(default_factory=SplitStats)
    _running: dict[Phase, PhaseIteration] = field(default_factory=dict)
    _contention: float = 1.0
    _last_s: float = 0.0
    _generation: int = 0
    """Bumped whenever durations change: completion timers of an older generation are stale."""

    def run(self, phase: Phase, batch: BatchShape) -> simpy.Event:
        """Start `batch` as `phase`'s next iteration: the event fires when it is done."""
        now = self.env.now
        self._advance(now)
        size = batch.num_tokens if phase is Phase.PREFILL else batch.num_entries
        iteration = PhaseIteration(phase, self.model.work(batch), size, self.env.event())
        self._running[phase] = iteration
        self._repartition(now)
        self._retime()
        return iteration.done

    def is_running(self, phase: Phase) -> bool:
        return phase in self._running

    def _work(self, phase: Phase) -> PhaseWork | None:
        iteration = self._running.get(phase)
        return iteration.work if iteration is not None else None

    def _predict(self, shares: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.model.phase_seconds(self._work(Phase.PREFILL), self._work(Phase.DECODE), shares)

    def _repartition(self, now: float) -> None:
        """Ask the policy for the prefill share, with both loops' batches in view; check its answer."""
        prefill, decode = self._running.get(Phase.PREFILL), self._running.get(Phase.DECODE)
        view = SplitView(self.prefill_share, prefill.size if prefill else 0, decode.size if decode else 0,
                         self.queued_prefill_tokens(), self._predict)
        try:
            share = self.policy.prefill_share(view, now)
        except Exception as exc:
            raise policy_raised(self.policy, HOOK, now, exc) from exc
        if not is_finite_number(share) or not 0 <= share <= 1:
            raise contract_violation(self.policy, HOOK, now, f"returned {share!r}; it must be a share from 0 to 1")
        if prefill is not None and share <= 0:
            raise contract_violation(self.policy, HOOK, now, f"returned {share!r} while a prefill batch runs; "
                                     "the prefill needs a share above 0")
        if decode is not None and share >= 1:
            raise contract_violation(self.policy, HOOK, now, f"returned {share!r} while a decode batch runs; "
                                     "the decode needs a share below 1")
        share = float(share)
        if share != self.prefill_share:
            self.stats.num_repartitions += 1
            self.prefill_share = share

    def _advance(self, now: float) -> None:
        """Credit the running iterations with the work done since the last change."""
        elapsed = now - self._last_s
        self._last_s = now
        if not self._running or elapsed <= 0:
            return
        for iteration in self._running.values():
            if iteration.seconds > 0:
                iteration.progress += elapsed / iteration.seconds
        stats = self.stats
        stats.busy_s += elapsed
        stats.share_s += elapsed * self.prefill_share
        if len(self._running) == 2:
            stats.both_busy_s += elapsed
            stats.contention_s += elapsed * self._contention

    def _retime(self) -> None:
        """New durations at the current split and contention; a completion timer for each iteration."""
        self._generation += 1
        generation = self._generation
        prefill_s, decode_s, factor = self.model.phase_times(self._work(Phase.PREFILL), self._work(Phase.DECODE),
                                                             np.array(self.prefill_share))
        self._contention = float(factor)
        self.stats.max_contention = max(self.stats.max_contention, self._contention)
        for iteration in self._running.values():
            iteration.seconds = float(prefill_s if iteration.phase is Phase.PREFILL else decode_s)
            left_s = max(0.0, (1.0 - iteration.progress) * iteration.seconds)
            self.env.timeout(left_s).callbacks.append(self._completion(iteration, generation))

    def _completion(self, iteration: PhaseIteration, generation: int) -> Callable[[simpy.Event], None]:
        """The timer callback that ends `iteration`, unless durations changed since it was set."""
        return lambda event: self._finish(iteration, generation)

    def _finish(self, iteration: PhaseIteration, generation: int) -> None:
        if generation != self._generation or self._running.get(iteration.phase) is not iteration:
            return
        self._advance(self.env.now)
        del self._running[iteration.phase]
        self._retime()
        iteration.done.succeed()

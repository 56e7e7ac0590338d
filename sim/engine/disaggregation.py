"""Prefill/decode disaggregation: the hand-off of a prefilled request and its KV to a decode replica.

When a request's prefill starts on a prefill replica, the transfer policy picks its decode
replica and whether its KV moves after the prefill or layer group by layer group during it.
The decode replica must first reserve the blocks the request will hold there (its prompt plus
the first generated token); requests waiting for those blocks queue per decode replica, first
come first served, and are admitted only at that replica's decisions, when its free blocks are
exact (a fast-forwarded stretch is cut short for them). This queue is the back-pressure: while
a request waits, the prefill replica keeps its KV, so a decode pool that is short of memory
fills the prefill pool's memory too.

After the prefill (`after_prefill`) the whole KV is sent once the blocks are reserved. Layerwise,
the KV of each step's new tokens leaves in `layer_groups` parts, each when its layers are done
(a step's layers run in order over its duration); parts ready before the reservation wait and
leave together at it. The request lands on the decode replica when its prefill is done, its
blocks are reserved and its last byte has arrived: the prefill replica then frees its copy,
the first token (computed by the prefill) is delivered, and the request waits, holding its
blocks, for the decode replica's scheduler.
"""
from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import simpy

from servesim.policies import TransferDecision, TransferPolicy
from servesim.policies.contract import contract_violation, is_count, policy_raised
from servesim.policies.views import blocks_for
from servesim.sim.engine.replica import Replica
from servesim.sim.engine.request import Request
from servesim.sim.engine.views import ReplicaView
from servesim.sim.network import Network

TRANSFER_COLUMNS = (
    "request_id", "prefill_replica", "prefill_pool", "decode_replica", "decode_pool", "layerwise", "kv_bytes",
    "prefill_start_s", "prefill_end_s", "queued_s", "reserved_s", "transfer_start_s", "transfer_end_s",
)
BACKPRESSURE_COLUMNS = ("time_s", "replica", "num_waiting_for_blocks")


@dataclass(slots=True, eq=False)
class Handoff:
    """One request on its way from a prefill replica to a decode replica."""

    request: Request
    source: Replica
    destination: Replica
    decision: TransferDecision
    prefill_start_s: float
    blocks: int
    """Blocks it holds on the decode replica once reserved: its prompt and its first token."""
    queued_s: float = math.nan
    reserved_s: float = math.nan
    prefill_end_s: float = math.nan
    transfer_start_s: float = math.nan
    streamed_tokens: int = 0
    """Layerwise: tokens whose KV was already handed to the stream."""
    backlog_bytes: int = 0
    """Layerwise: bytes ready before the reservation, sent at it."""
    bytes_sent: int = 0
    sends_in_flight: int = 0

    @property
    def reserved(self) -> bool:
        return not math.isnan(self.reserved_s)

    @property
    def prefilled(self) -> bool:
        return not math.isnan(self.prefill_end_s)


class Disaggregation:
    """Moves prefilled requests from the prefill replicas to the decode replicas (see the module notes)."""

    def __init__(self, env: simpy.Environment, policy: TransferPolicy, network: Network,
                 kv_bytes_per_token: int, decode_replicas: Sequence[Replica]) -> None:
        self.env = env
        self.policy = policy
        self.network = network
        self.kv_bytes_per_token = kv_bytes_per_token
        self.decode_replicas: list[Replica] = []
        self._decode_views: tuple[ReplicaView, ...] = ()
        self._handoffs: dict[int, Handoff] = {}
        self._queues: dict[int, deque[Handoff]] = {}
        for replica in decode_replicas:
            self.attach_decode(replica)
        self.transfers: list[tuple] = []
        """One row of TRANSFER_COLUMNS per request that landed on a decode replica."""
        self.backpressure: list[tuple] = []
        """Rows of BACKPRESSURE_COLUMNS: a decode replica's queue for blocks from `time_s` on."""

    def attach_prefill(self, replica: Replica) -> None:
        replica.on_step = partial(self._step_started, replica)
        replica.on_prefilled = partial(self._prefilled, replica)

    def detach_prefill(self, replica: Replica) -> None:
        """A drained prefill replica (dynamic roles) no longer hands requests off."""
        replica.on_step = replica.on_prefilled = None

    def attach_decode(self, replica: Replica) -> None:
        """Offer `replica` to the transfer policy as a decode destination (in replica order)."""
        self._queues.setdefault(replica.replica_id, deque())
        replica.on_decision = partial(self._reserve, replica)
        self.decode_replicas = sorted([*self.decode_replicas, replica], key=lambda r: r.replica_id)
        self._decode_views = tuple(r.view for r in self.decode_replicas)

    def withdraw_decode(self, replica: Replica) -> None:
        """Offer `replica` no more (dynamic roles); it still takes the requests already planned for it."""
        self.decode_replicas.remove(replica)
        self._decode_views = tuple(r.view for r in self.decode_replicas)

    def detach_decode(self, replica: Replica) -> None:
        """A withdrawn decode replica whose queue is empty stops reserving blocks."""
        replica.on_decision = None

    def num_waiting_for_blocks(self, replica: Replica) -> int:
        return len(self._queues.get(replica.replica_id, ()))

    def holds_kv_of(self, source: Replica) -> bool:
        """Whether a request prefilled (or prefilling) on `source` has not landed on its decode replica yet."""
        return any(handoff.source is source for handoff in self._handoffs.values())

    @property
    def num_in_flight(self) -> int:
        return len(self._handoffs)

    def _step_started(self, source: Replica, entries: list[tuple[Request, int]], began: float, seconds: float) -> None:
        for request, num_new in entries:
            if request.output_tokens < 2 or request.num_generated:
                continue  # a single-token answer ends with its prefill, here
            handoff = self._handoffs.get(request.request_id)
            if handoff is None:
                handoff = self._plan(source, request)
            if handoff.decision.layerwise:
                self._stream(handoff, request.num_computed_tokens + num_new, seconds)

    def _plan(self, source: Replica, request: Request) -> Handoff:
        now, policy = self.env.now, self.policy
        try:
            decision = policy.plan(request.view, source.view, self._decode_views, now)
        except Exception as exc:
            raise policy_raised(policy, "transfer.plan", now, exc) from exc
        count = len(self._decode_views)
        if (not isinstance(decision, TransferDecision) or not is_count(decision.destination)
                or not 0 <= decision.destination < count or not is_count(decision.layer_groups)
                or decision.layer_groups < 1):
            raise contract_violation(policy, "transfer.plan", now, f"returned {decision!r}; it must be a "
                                     f"TransferDecision whose destination is an index from 0 to {count - 1} and "
                                     "whose layer_groups is at least 1")
        destination = self.decode_replicas[decision.destination]
        blocks = blocks_for(request.prompt_tokens + 1, destination.kv.block_size)
        handoff = Handoff(request, source, destination, decision, now, blocks)
        self._handoffs[request.request_id] = handoff
        destination.num_inbound += 1
        if decision.layerwise:
            self._enqueue(handoff)
        return handoff

    def _stream(self, handoff: Handoff, computed_after_step: int, seconds: float) -> None:
        """This step computes the KV of tokens up to `computed_after_step`: it leaves group by group."""
        new_tokens = computed_after_step - handoff.streamed_tokens
        if new_tokens <= 0:
            return  # recomputing what was already streamed (after a preemption)
        handoff.streamed_tokens = computed_after_step
        nbytes = new_tokens * self.kv_bytes_per_token
        groups = handoff.decision.layer_groups
        for group in range(groups):
            part = nbytes * (group + 1) // groups - nbytes * group // groups
            delay = seconds if group == groups - 1 else seconds * (group + 1) / groups
            self.env.timeout(delay).callbacks.append(partial(self._part_ready, handoff, part))

    def _part_ready(self, handoff: Handoff, nbytes: int, _event: simpy.Event) -> None:
        if handoff.reserved:
            self._send(handoff, nbytes)
        else:
            handoff.backlog_bytes += nbytes

    def _prefilled(self, source: Replica, request: Request) -> None:
        handoff = self._handoffs[request.request_id]
        handoff.prefill_end_s = self.env.now
        if handoff.decision.layerwise:
            self._land_if_ready(handoff)
        else:
            self._enqueue(handoff)

    def _enqueue(self, handoff: Handoff) -> None:
        destination = handoff.destination
        queue = self._queues[destination.replica_id]
        handoff.queued_s = self.env.now
        queue.append(handoff)
        self._sample(destination)
        destination.notify()

    def _reserve(self, destination: Replica) -> None:
        """At a decision of `destination`: reserve blocks for the requests at the head of its queue."""
        queue = self._queues[destination.replica_id]
        if not queue:
            return
        kv = destination.kv
        reserved = False
        while queue and queue[0].blocks <= kv.num_free_blocks:
            handoff = queue.popleft()
            kv.allocate(handoff.request.request_id, handoff.blocks)
            handoff.reserved_s = self.env.now
            reserved = True
            if handoff.decision.layerwise:
                if handoff.backlog_bytes:
                    self._send(handoff, handoff.backlog_bytes)
                    handoff.backlog_bytes = 0
                self._land_if_ready(handoff)
            else:
                self._send(handoff, handoff.request.num_computed_tokens * self.kv_bytes_per_token)
        if reserved:
            self._sample(destination)

    def _send(self, handoff: Handoff, nbytes: int) -> None:
        if math.isnan(handoff.transfer_start_s):
            handoff.transfer_start_s = self.env.now
        handoff.bytes_sent += nbytes
        handoff.sends_in_flight += 1
        event = self.network.send(handoff.source.placement.devices, handoff.destination.placement.devices, nbytes,
                                  tag="kv")
        event.callbacks.append(partial(self._arrived, handoff))

    def _arrived(self, handoff: Handoff, _event: simpy.Event) -> None:
        handoff.sends_in_flight -= 1
        self._land_if_ready(handoff)

    def _land_if_ready(self, handoff: Handoff) -> None:
        if not (handoff.prefilled and handoff.reserved) or handoff.sends_in_flight or handoff.backlog_bytes:
            return
        now, request = self.env.now, handoff.request
        source, destination = handoff.source, handoff.destination
        del self._handoffs[request.request_id]
        source.kv.release(request.request_id)
        source.notify()  # its scheduler may have been waiting for these blocks
        request.num_blocks = handoff.blocks
        request.first_token_s = request.last_token_s = now
        if source.metrics.tokens is not None:
            source.metrics.tokens.first_token_moved(request.request_id, now)
        destination.num_inbound -= 1
        self.transfers.append((
            request.request_id, source.replica_id, source.placement.pool, destination.replica_id,
            destination.placement.pool, handoff.decision.layerwise, handoff.bytes_sent, handoff.prefill_start_s,
            handoff.prefill_end_s, handoff.queued_s, handoff.reserved_s, handoff.transfer_start_s, now,
        ))
        destination.receive(request)

    def _sample(self, destination: Replica) -> None:
        queue = self._queues[destination.replica_id]
        self.backpressure.append((self.env.now, destination.replica_id, len(queue)))

"""The serving engine's own time, beside the GPU kernels a cost model prices.

Three small pieces, each switchable from the `engine` config section:

- `EngineOverheadCostModel` wraps any cost model: decode-only batches are padded up to the next
  CUDA-graph capture size (eager, unpadded, above the largest), and a CPU term per iteration and
  per sequence is added (scheduling, input preparation, sampling, detokenisation), plus a host
  term for every step that does not run as one full CUDA graph (its kernels launched layer by
  layer).
- `ApiServerPath`: the API server's per-request path, a fixed plus a per-prompt-token delay
  before the engine sees a request (tokenisation, queueing into the engine core) and a fixed
  delay on the way out (detokenising and streaming a token back).
- Asynchronous scheduling is a gate in the replica loop (`Replica`, `ReplicaSetup.async_scheduling`).

Fitted parameter sets, one per GPU and engine version, live in `engine_overheads.yaml`.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
import yaml

from servesim.hwmodels import BatchShape, CostModel, IterationCost, OperatorTime

VLLM_MAX_CAPTURE_SIZE = 512


def vllm_capture_sizes(max_num_seqs: int) -> tuple[int, ...]:
    """vLLM's default CUDA-graph capture sizes (v0.11+, unchanged in 0.19): 1, 2, 4, multiples of 8
    below 256, then multiples of 16 up to min(2 x max_num_seqs, 512) (`set_cudagraph_sizes`)."""
    largest = min(2 * max_num_seqs, VLLM_MAX_CAPTURE_SIZE)
    sizes = [1, 2, 4, *range(8, 256, 8), *range(256, largest + 1, 16)]
    return tuple(s for s in sizes if s <= largest)


class EngineOverheadCostModel(CostModel):
    """`inner`'s kernel times plus CUDA-graph padding and the engine's CPU time per step.

    A padded slot decodes a dummy token with the shortest real context, so a stretch of decodes
    pads the same way at every step and a stretch priced from the batch's context sum alone
    equals pricing step by step: each padded slot adds the shortest context to the sum.

    vLLM 0.19 replays a decode-only batch up to the largest capture size as one full CUDA graph;
    any other step (a prefill chunk in it, or more decodes than the largest size) runs piecewise
    or eager, the host launching its kernels layer by layer. `per_eager_iteration_s` is that
    host time where the previous step's GPU work does not hide it, added to such steps only.
    """

    def __init__(self, inner: CostModel, capture_sizes: tuple[int, ...] = (), per_iteration_s: float = 0.0,
                 per_sequence_s: float = 0.0, per_eager_iteration_s: float = 0.0) -> None:
        self.inner = inner
        self.capture_sizes = np.asarray(sorted(capture_sizes), dtype=np.int64)
        self._padded_sizes: dict[int, int] = {}
        """`padded_size` by batch size: asked at every step, answered from a handful of sizes."""
        self.per_iteration_s = per_iteration_s
        self.per_sequence_s = per_sequence_s
        self.per_eager_iteration_s = per_eager_iteration_s

    def padded_size(self, num_decodes: int) -> int:
        """The captured graph size a decode-only batch of `num_decodes` runs as (itself above the largest)."""
        padded = self._padded_sizes.get(num_decodes)
        if padded is None:
            sizes = self.capture_sizes
            padded = num_decodes if not len(sizes) or num_decodes > sizes[-1] else int(
                sizes[np.searchsorted(sizes, num_decodes)])
            self._padded_sizes[num_decodes] = padded
        return padded

    def runs_as_graph(self, batch: BatchShape) -> bool:
        """Whether `batch` replays as one full CUDA graph: decodes only, no more than the largest size."""
        sizes = self.capture_sizes
        return bool(len(sizes)) and _decodes_only(batch) and batch.num_entries <= sizes[-1]

    def eager_s(self, batch: BatchShape) -> float:
        """The host time of launching `batch` layer by layer: 0 when it replays as one full graph."""
        return 0.0 if self.runs_as_graph(batch) else self.per_eager_iteration_s

    def graph_padded(self, batch: BatchShape) -> BatchShape:
        """`batch` as it runs: a decode-only batch padded to its captured graph size."""
        if not len(self.capture_sizes) or not _decodes_only(batch):
            return batch
        return self._padded(batch)

    def _padded(self, batch: BatchShape) -> BatchShape:
        """A decode-only `batch` padded to its captured graph size."""
        extra = self.padded_size(batch.num_entries) - batch.num_entries
        if not extra:
            return batch
        shortest = min(batch.context_lens)
        return BatchShape(batch.new_tokens + (1,) * extra, batch.context_lens + (shortest,) * extra)

    def _cpu_s(self, num_entries: int) -> float:
        return self.per_iteration_s + self.per_sequence_s * num_entries

    def breakdown(self, batch: BatchShape) -> IterationCost:
        kernels = self.inner.breakdown(self.graph_padded(batch)).operators
        cpu = (OperatorTime("engine_cpu_iteration", 1, self.per_iteration_s),
               OperatorTime("engine_cpu_sequences", batch.num_entries, self.per_sequence_s),
               OperatorTime("engine_cpu_eager_launch", 1, self.eager_s(batch)))
        return IterationCost(kernels + cpu)

    def iteration_time(self, batch: BatchShape) -> float:
        """`graph_padded`'s kernels, the CPU time and `eager_s`, asking once whether it is a graph's batch."""
        sizes = self.capture_sizes
        if len(sizes) and _decodes_only(batch):
            kernels = self.inner.iteration_time(self._padded(batch))
            eager = 0.0 if batch.num_entries <= sizes[-1] else self.per_eager_iteration_s
        else:
            kernels = self.inner.iteration_time(batch)
            eager = self.per_eager_iteration_s
        return kernels + self._cpu_s(batch.num_entries) + eager

    def stretch_of_decodes_by_sum(self, num_decodes: int, context_sum: int, shortest: int, num_steps: int,
                                  ) -> np.ndarray | None:
        """The padded batch's kernels, the CPU time and, above the largest captured size, the eager
        host time (adding 0.0 to a positive time would change nothing, so it is left out)."""
        padded = self.padded_size(num_decodes)
        kernels = self.inner.stretch_of_decodes_by_sum(padded, context_sum + (padded - num_decodes) * shortest,
                                                      shortest, num_steps)
        if kernels is None:
            return None
        times = kernels + self._cpu_s(num_decodes)
        if not len(self.capture_sizes) or num_decodes > self.capture_sizes[-1]:
            times += self.per_eager_iteration_s
        return times

    def decodes_and_chunk_by_sum(self, num_decodes: int, decode_context_sum: int, chunk_tokens: int,
                                 chunk_context: int) -> float | None:
        """`iteration_time` of a batch with a chunk: never a CUDA graph's, so eager."""
        kernels = self.inner.decodes_and_chunk_by_sum(num_decodes, decode_context_sum, chunk_tokens, chunk_context)
        if kernels is None:
            return None
        return kernels + self._cpu_s(num_decodes + 1) + self.per_eager_iteration_s

    def describe(self) -> dict[str, Any]:
        return {
            **self.inner.describe(),
            "engine_overheads": {
                "cuda_graph_max_size": int(self.capture_sizes[-1]) if len(self.capture_sizes) else None,
                "cpu_per_iteration_s": self.per_iteration_s,
                "cpu_per_sequence_s": self.per_sequence_s,
                "cpu_per_eager_iteration_s": self.per_eager_iteration_s,
            },
        }


def _decodes_only(batch: BatchShape) -> bool:
    """One new token on a context of at least one for every entry, and no layer slice: the batch a
    CUDA graph is captured for."""
    return (bool(batch.num_entries) and not batch.layer_slices and batch.new_tokens.count(1) == batch.num_entries
            and min(batch.context_lens) >= 1)


@dataclass(frozen=True)
class ApiServerPath:
    """Delays of the API server in front of the engine (seconds)."""

    fixed_s: float = 0.0
    per_prompt_token_s: float = 0.0
    stream_out_s: float = 0.0

    def inbound_s(self, prompt_tokens: int) -> float:
        """From the client's request to the engine's queue: parsing, tokenising, handing over."""
        return self.fixed_s + self.per_prompt_token_s * prompt_tokens


@dataclass(frozen=True)
class FittedOverheads:
    """One fitted parameter set (see `benchmarks/fit_engine_overheads.py`)."""

    cpu_per_iteration_s: float
    cpu_per_sequence_s: float
    api_fixed_s: float
    api_per_prompt_token_s: float
    api_stream_out_s: float
    source: str
    cpu_per_eager_iteration_s: float = 0.0


def fitted_overheads(hardware: str, engine: str) -> FittedOverheads:
    """The parameter set fitted for `hardware` under `engine` (e.g. `vllm-0.19`), else the engine's default set."""
    data = yaml.safe_load(resources.files("servesim.sim.engine").joinpath("engine_overheads.yaml").read_text())
    sets = data.get(engine) or {}
    entry = sets.get(hardware) or sets.get("default") or data["none"]["default"]
    return FittedOverheads(**entry)

"""The shapes a cost model sees: one iteration's batch and the parallel plan it runs under.

Cost models never see Request objects, only these shapes, so a model can be profiled, tabulated
and memoised independently of the engine.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ParallelPlan:
    """How one replica's model is split over devices (tensor, pipeline and expert parallel)."""

    tp: int = 1
    pp: int = 1
    ep: int = 1

    @property
    def num_devices(self) -> int:
        return self.tp * self.pp


@dataclass(frozen=True, slots=True)
class LayerSlice:
    """A prompt that runs through one group of layers this iteration (layered prefill): its
    `new_tokens` after `context_len` cached ones, through group `group` of the model's layers cut
    into `num_groups` contiguous groups (so a scheduler needs no knowledge of the model)."""

    new_tokens: int
    context_len: int
    group: int
    num_groups: int

    def layers(self, num_layers: int) -> tuple[int, int]:
        """The [first, end) layers of its group in a model of `num_layers` layers."""
        return self.group * num_layers // self.num_groups, (self.group + 1) * num_layers // self.num_groups


@dataclass(frozen=True, slots=True)
class BatchShape:
    """One iteration: for each batch entry, the new tokens computed and the context before them.

    An entry with one new token and a non-empty context is a decode; anything else is (a chunk
    of) a prefill. `context_lens[i]` counts tokens whose KV is already cached for entry i.
    """

    new_tokens: tuple[int, ...]
    context_lens: tuple[int, ...]
    layer_slices: tuple[LayerSlice, ...] = ()
    """Prompts that run through only some layers this iteration (layered prefill); the entries
    above run through all of them. Only `LayerSliceCostModel` prices these."""

    def __post_init__(self) -> None:
        if len(self.new_tokens) != len(self.context_lens):
            raise ValueError("BatchShape: new_tokens and context_lens differ in length")

    @property
    def num_entries(self) -> int:
        return len(self.new_tokens)

    @property
    def num_tokens(self) -> int:
        return sum(self.new_tokens)

    def decode_context_lens(self) -> list[int]:
        return [c for n, c in zip(self.new_tokens, self.context_lens, strict=True) if n == 1 and c > 0]

    def prefill_chunks(self) -> list[tuple[int, int]]:
        """(new tokens, prior context) of each prefill entry."""
        return [(n, c) for n, c in zip(self.new_tokens, self.context_lens, strict=True) if not (n == 1 and c > 0)]

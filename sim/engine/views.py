"""Read-only views of engine objects: what policies receive instead of the objects themselves.

Each view holds its engine object in one slot and exposes the attributes of the matching
`policies.views` protocol as properties without setters, so a plug-in cannot change a request's
output length, progress or state, nor a replica's queues or KV pool. The getters are
`operator.attrgetter`s (C code, no Python frame): reading through a view costs little more
than reading the object. A request's view is made once with the request, so identity holds:
the same request is always the same view object, and the engine maps it back in O(1).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from operator import attrgetter
from typing import Any

_VIEW = attrgetter("view")


def _add_readers(cls: type, target: str, names: Iterable[str]) -> None:
    for name in names:
        setattr(cls, name, property(attrgetter(f"{target}.{name}")))


class _ReadOnly:
    __slots__ = ()

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only: cannot set {name!r}")


REQUEST_FIELDS = (
    "request_id", "arrival_s", "prompt_tokens", "output_tokens", "priority", "slo_class", "ttft_deadline_s",
    "prefix_group", "session_id", "num_computed_tokens", "num_generated", "num_tokens", "num_blocks", "num_preemptions",
    "is_swapped",
)


class RequestView(_ReadOnly):
    """A request as a policy sees it (read-only)."""

    __slots__ = ("_request",)
    _request: Any

    def __repr__(self) -> str:
        return f"RequestView({self._request!r})"


_add_readers(RequestView, "_request", REQUEST_FIELDS)


def request_view(request: Any) -> Any:
    view = RequestView.__new__(RequestView)
    object.__setattr__(view, "_request", request)
    return view


class Views(Sequence):
    """A read-only sequence of the views of an engine container's requests (no copy made)."""

    __slots__ = ("_items",)
    _items: Sequence[Any]

    def __init__(self, items: Sequence[Any]) -> None:
        object.__setattr__(self, "_items", items)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Views is read-only: cannot set {name!r}")

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Any]:
        return map(_VIEW, self._items)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [item.view for item in list(self._items)[index]]
        return self._items[index].view

    def __bool__(self) -> bool:
        return bool(self._items)

    def __repr__(self) -> str:
        return f"Views({list(self)!r})"


class KvView(_ReadOnly):
    """A KV pool as a policy sees it: sizes and what-if questions, never allocation."""

    __slots__ = ("_pool",)
    _pool: Any

    def __init__(self, pool: Any) -> None:
        object.__setattr__(self, "_pool", pool)

    num_blocks = property(attrgetter("_pool.num_blocks"))
    num_free_blocks = property(attrgetter("_pool.num_free_blocks"))
    block_size = property(attrgetter("_pool.block_size"))

    def cached_prefix(self, request: Any) -> Any:
        return self._pool.cached_prefix(request._request)

    def num_exclusive_blocks(self, request: Any) -> int:
        return self._pool.num_exclusive_blocks(request._request)


class IterationView(_ReadOnly):
    """An iteration in flight or suspended, as a policy sees it."""

    __slots__ = ("_iteration",)
    _iteration: Any

    def __init__(self, iteration: Any) -> None:
        object.__setattr__(self, "_iteration", iteration)

    @property
    def entries(self) -> tuple[tuple[Any, int], ...]:
        return tuple((request.view, num_new) for request, num_new in self._iteration.entries)

    start_s = property(attrgetter("_iteration.start_s"))
    remaining_s = property(attrgetter("_iteration.remaining_s"))


class ReplicaView(_ReadOnly):
    """A replica as a scheduler or router sees it: its queues as views, its pool as a `KvView`."""

    __slots__ = ("_replica", "kv")
    _replica: Any
    kv: KvView

    def __init__(self, replica: Any) -> None:
        object.__setattr__(self, "_replica", replica)
        object.__setattr__(self, "kv", KvView(replica.kv))

    replica_id = property(attrgetter("_replica.replica_id"))
    cost_model = property(attrgetter("_replica.cost_model"))
    num_outstanding = property(attrgetter("_replica.num_outstanding"))
    outstanding_tokens = property(attrgetter("_replica.outstanding_tokens"))
    pool = property(attrgetter("_replica.placement.pool"))
    role = property(attrgetter("_replica.placement.role"))
    hardware = property(attrgetter("_replica.placement.hardware"))
    nodes = property(attrgetter("_replica.placement.nodes"))

    @property
    def running(self) -> Views:
        return Views(self._replica.running)

    @property
    def waiting(self) -> Views:
        return Views(self._replica.waiting)

    @property
    def recently_finished(self) -> Views:
        return Views(self._replica.recently_finished)

    @property
    def suspended(self) -> tuple[IterationView, ...]:
        return tuple(iteration.view for iteration in self._replica.suspended)

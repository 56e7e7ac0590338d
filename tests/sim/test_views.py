"""Read-only views: policies read engine state through them and cannot write it."""
from __future__ import annotations

from collections import deque

import pytest

from servesim.policies.views import CachedPrefix
from servesim.policies.views import KvView as KvProtocol
from servesim.policies.views import ReplicaView as ReplicaProtocol
from servesim.policies.views import RequestView as RequestProtocol
from servesim.sim.engine.kv_memory import BlockPool
from servesim.sim.engine.request import Request
from servesim.sim.engine.views import REQUEST_FIELDS, KvView, RequestView, Views


def request(request_id: int = 3) -> Request:
    return Request(request_id, 1.5, prompt_tokens=40, output_tokens=7, priority=2, prefix_hashes=(11, 12))


def test_a_request_view_reads_every_protocol_attribute_live():
    engine = request()
    view = engine.view
    protocol = {name for name in dir(RequestProtocol) if not name.startswith("_")}
    assert protocol == set(REQUEST_FIELDS)
    for name in REQUEST_FIELDS:
        assert getattr(view, name) == getattr(engine, name)
    engine.num_computed_tokens = 17
    assert view.num_computed_tokens == 17  # a view, not a snapshot


@pytest.mark.parametrize("name", [*REQUEST_FIELDS, "state", "new_attribute", "_request"])
def test_no_attribute_of_a_request_view_can_be_set(name):
    view = request().view
    with pytest.raises(AttributeError, match="read-only"):
        setattr(view, name, 1)


def test_each_request_has_one_view_and_the_engine_maps_it_back():
    engine = request()
    assert engine.view is engine.view and type(engine.view) is RequestView
    assert engine.view._request is engine


def test_views_of_a_queue_are_a_read_only_sequence_without_mutators():
    items = deque([request(1), request(2), request(3)])
    views = Views(items)
    assert [v.request_id for v in views] == [1, 2, 3] and len(views) == 3 and views
    assert views[0] is items[0].view and views[-1] is items[2].view
    assert [v.request_id for v in views[1:]] == [2, 3]
    assert items[1].view in views
    for mutator in ("append", "remove", "clear", "pop", "popleft", "insert", "sort"):
        assert not hasattr(views, mutator)
    with pytest.raises(TypeError):
        views[0] = items[0].view  # type: ignore[index]
    items.popleft()
    assert len(views) == 2  # live: no copy was made


def test_a_kv_view_answers_questions_but_cannot_allocate():
    pool = BlockPool(10, 16)
    kv = KvView(pool)
    engine = request()
    pool.allocate(engine.request_id, 4)
    assert (kv.num_blocks, kv.num_free_blocks, kv.block_size) == (10, 6, 16)
    assert kv.num_exclusive_blocks(engine.view) == 4
    assert kv.cached_prefix(engine.view).num_tokens == 0
    assert not hasattr(kv, "allocate") and not hasattr(kv, "release")
    with pytest.raises(AttributeError, match="read-only"):
        kv.block_size = 1  # type: ignore[misc]


def test_the_views_satisfy_the_protocols_policies_are_typed_against():
    # Structural check: every protocol member exists on the view classes.
    from servesim.sim.engine.views import ReplicaView

    for protocol, cls in ((KvProtocol, KvView), (ReplicaProtocol, ReplicaView)):
        members = {n for n in dir(protocol) if not n.startswith("_")}
        assert members <= set(dir(cls)), members - set(dir(cls))
    assert {n for n in dir(CachedPrefix) if not n.startswith("_")} <= set(dir(BlockPool(1, 1).cached_prefix(None)))

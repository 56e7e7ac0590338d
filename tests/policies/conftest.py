"""Fixtures shared by the policy tests."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from servesim.policies import registry


@pytest.fixture
def isolated_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict]:
    """A copy of the loaded registry that a test may add to; the real one is restored afterwards.

    `_loaded` stays true, so entry points are not read again unless the test resets it (the
    built-ins are already in the copy: their modules are imported once per process).
    """
    registry.all_policies()
    sandbox = dict(registry._REGISTRY)
    monkeypatch.setattr(registry, "_REGISTRY", sandbox)
    yield sandbox

"""Shared fixtures for the simulator's tests.

``member_factory``: the simulator runs kv.member.Member; until that module
imports, the tests run it over the RaftNode stand-in (tests/sim/standin_member.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sim import cluster


def _real_member_available() -> bool:
    try:
        import kv.member  # noqa: F401
    except ImportError:
        return False
    return True


REAL_MEMBER = _real_member_available()


@pytest.fixture(autouse=True)
def member_factory(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    if not REAL_MEMBER:
        from tests.sim.standin_member import standin_factory

        monkeypatch.setattr(cluster, "make_member", standin_factory)
    yield

"""The side-by-side fixture the etcdctl and auth tests share: a real etcd 3.4 and a
raftkv member, each command run on both (support.Pair)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .support import Pair, RealEtcd, ServerThread, Target, free_port


@pytest.fixture
def pair() -> Iterator[Pair]:
    peer_port = free_port()
    with RealEtcd() as etcd, ServerThread(peer_urls=(f"http://127.0.0.1:{peer_port}",)) as raftkv:
        p = Pair(Target("etcd", etcd.endpoint, etcd.peer_port), Target("raftkv", raftkv.endpoint, peer_port))
        for t in p.targets:
            t.learn_identity()
        yield p

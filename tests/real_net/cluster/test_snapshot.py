"""`etcdctl snapshot save` against a 3-member raftkv TLS cluster, restored into a real etcd 3.4.

A snapshot is one member's applied state at one instant of its event loop:
any member can be asked (etcdctl asks exactly one endpoint), members that
applied the same log give the same data, a snapshot taken while writes pour
in still holds every revision up to its own and none after, and the file
restores into a real etcd that serves the cluster's keys exactly as raftkv
served them.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from real_net import bbolt, etcd_db
from real_net.client import Stubs, channel
from real_net.proto import kv_pb2
from real_net.proto import rpc_pb2 as pb

from ..api.support import etcdctl, restored_etcd
from .support import Cluster, member_ids, raftkv_cluster

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with raftkv_cluster(tmp_path_factory.mktemp("snap")) as c:
        for args in (("put", "a", "1"), ("put", "a", "2"), ("put", "b", "x"), ("del", "a"), ("put", "c", "y")):
            r = c.etcdctl(*args)
            assert r.returncode == 0, r.text
        lease = c.etcdctl("lease", "grant", "3600").stdout.split()[1]
        assert c.etcdctl("put", "leased", "l", f"--lease={lease}").returncode == 0
        yield c


def revision_of(c: Cluster, name: str) -> int:
    """The revision member `name` has applied (a serializable read: its own state)."""
    r = c.etcdctl("get", "x", "--consistency=s", "-w", "json", on=[name])
    assert r.returncode == 0, r.text
    rev: int = json.loads(r.stdout)["header"]["revision"]
    return rev


def settle(c: Cluster, timeout: float = 10.0) -> int:
    """Wait until every member has applied the same revision; that revision."""
    deadline = time.monotonic() + timeout
    while True:
        revs = {revision_of(c, n) for n in c.nodes}
        if len(revs) == 1:
            return revs.pop()
        assert time.monotonic() < deadline, f"members did not converge: {revs}"
        time.sleep(0.05)


def save(c: Cluster, name: str, path: Path) -> bbolt.Database:
    r = c.etcdctl("snapshot", "save", str(path), on=[name])
    assert r.returncode == 0, r.text
    return bbolt.read_db(path.read_bytes()[:-32])


def key_revisions(db: bbolt.Database) -> list[tuple[int, int, bool]]:
    return [etcd_db.parse_revision_key(k) for k in db.buckets[b"key"]]


def test_a_followers_snapshot_restores_into_etcd_with_the_clusters_keys(cluster: Cluster, tmp_path: Path) -> None:
    rev = settle(cluster)
    follower = cluster.followers()[0]
    path = tmp_path / "follower.db"
    db = save(cluster, follower, path)
    status = json.loads(etcdctl("127.0.0.1:1", "snapshot", "status", str(path), "-w", "json").stdout)
    assert status["revision"] == rev
    # The members bucket is the cluster's membership, as etcd stores it.
    ids = member_ids(cluster)
    assert sorted(db.buckets[b"members"]) == sorted(format(i, "x").encode() for i in ids.values())
    for name, mid in ids.items():
        member = json.loads(db.buckets[b"members"][format(mid, "x").encode()])  # type: ignore[arg-type]
        assert (member["id"], member["name"], member["peerURLs"]) == (mid, name, [cluster.nodes[name].peer_url])
    served = json.loads(cluster.etcdctl("get", "", "--prefix", "-w", "json").stdout)
    with restored_etcd(path, tmp_path) as etcd:
        got = json.loads(etcdctl(etcd.endpoint, "get", "", "--prefix", "-w", "json").stdout)
        assert got["kvs"] == served["kvs"]  # keys, values, create/mod revisions, versions, leases
        assert got["header"]["revision"] == served["header"]["revision"] == rev
        leases = etcdctl(etcd.endpoint, "lease", "list").stdout
        assert served["kvs"][-1]["key"] == "bGVhc2Vk" and format(served["kvs"][-1]["lease"], "x") in leases


def test_members_that_applied_the_same_log_give_the_same_data(cluster: Cluster, tmp_path: Path) -> None:
    settle(cluster)
    dbs = {name: save(cluster, name, tmp_path / f"{name}.db") for name in cluster.nodes}
    first, *rest = dbs.values()
    for db in rest:
        for bucket in (b"key", b"lease", b"members", b"members_removed", b"cluster"):
            assert db.buckets[bucket] == first.buckets[bucket], bucket


def test_members_that_applied_the_same_log_answer_the_same_maintenance_hash(cluster: Cluster) -> None:
    assert cluster.etcdctl("put", "hash/k", "v1").returncode == 0
    settle(cluster)

    def hashes() -> dict[str, int]:
        out = {}
        for name, node in cluster.nodes.items():
            with channel(node.client_url, cluster.tls) as ch:
                out[name] = Stubs(ch).maintenance.Hash(pb.HashRequest(), timeout=10).hash
        return out

    before = hashes()
    assert len(set(before.values())) == 1, before
    assert cluster.etcdctl("put", "hash/k", "v2").returncode == 0
    settle(cluster)
    after = hashes()
    assert len(set(after.values())) == 1 and set(after.values()) != set(before.values()), (before, after)


def test_a_snapshot_taken_during_writes_holds_every_revision_up_to_its_own(cluster: Cluster, tmp_path: Path) -> None:
    lead = cluster.leader()
    follower = cluster.followers()[0]
    stop = threading.Event()
    errors: list[BaseException] = []
    done = [0]  # puts acknowledged so far

    def writer() -> None:
        try:
            with channel(cluster.nodes[lead].client_url, cluster.tls) as ch:
                kv = Stubs(ch).kv
                i = 0
                while not stop.is_set():
                    kv.Put(pb.PutRequest(key=b"w/%04d" % (i % 50), value=b"%d" % i), timeout=5)
                    i += 1
                    done[0] = i
        except BaseException as e:  # reported by the test below
            errors.append(e)

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    def wait_for_puts(n: int) -> None:
        deadline = time.monotonic() + 10
        target = done[0] + n
        while done[0] < target and not errors:
            assert time.monotonic() < deadline, "the writer stalled"
            time.sleep(0.01)

    try:
        snaps: list[Any] = []
        for i in range(3):
            wait_for_puts(10)  # writes land between the snapshots, and during them
            snaps.append(save(cluster, follower, tmp_path / f"during{i}.db"))
    finally:
        stop.set()
        t.join(10)
    assert not errors, errors
    last_index = 0
    for db in snaps:
        revs = key_revisions(db)
        mains = [main for main, _, _ in revs]
        # No compaction in this module: every revision from 2 to the newest, once each.
        assert mains == list(range(2, mains[-1] + 1))
        # Each version is the one its key history implies: versions count up by one.
        versions: dict[bytes, int] = {}
        for (main, _, tombstone), value in zip(revs, db.buckets[b"key"].values()):
            kv = kv_pb2.KeyValue.FromString(value)  # type: ignore[arg-type]
            if tombstone:
                versions.pop(kv.key, None)
                continue
            assert kv.mod_revision == main and kv.version == versions.get(kv.key, 0) + 1
            versions[kv.key] = kv.version
        index = int.from_bytes(db.buckets[b"meta"][b"consistent_index"], "big")  # type: ignore[arg-type]
        assert index > last_index  # later snapshots, later applied indexes
        last_index = index
    assert key_revisions(snaps[-1])[-1][0] > key_revisions(snaps[0])[-1][0]  # writes went on meanwhile

"""Maintenance.Snapshot: `etcdctl snapshot save` against raftkv gives a file etcd's own tools take.

The same writes go to a real etcd 3.4 and to raftkv's gRPC server over
LocalBackend, each started fresh (both at revision 1). Then:

* ``snapshot save`` succeeds against both; ``snapshot status`` (bbolt opens the
  file and runs its consistency check) reports the same revision and key count;
* the two files hold the same buckets, and the same ``key`` bucket entry for
  entry (revision keys, tombstones, KeyValue protobufs), lease IDs aside;
* the stream is etcd's: 32 KiB chunks, remaining_bytes counting down, then the
  sha256 of the database; the JSON gateway serves it too;
* ``snapshot restore`` of raftkv's file into a new data dir starts a real etcd
  that serves raftkv's keys, values, revisions, versions, leases and
  compaction.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from real_net import bbolt, etcd_db
from real_net.client import Stubs, channel
from real_net.grpc_server import SNAPSHOT_CHUNK_BYTES
from real_net.proto import kv_pb2
from real_net.proto import rpc_pb2 as pb
from real_net.snapshot_file import HASH_IGNORES, backend_hash

from ..http.support import PortThread, call
from .support import RealEtcd, ServerThread, etcdctl, restored_etcd

pytestmark = pytest.mark.timeout(120)

BIG = "v" * 40_000  # past a page and past a chunk: overflow pages, several stream messages


def apply_writes(endpoint: str) -> dict[str, str]:
    """Puts, overwrites, a delete and a re-create, a txn, a value of 40 KB, a key on a
    long lease, a key on a lease that is then revoked, and a compaction. Returns the
    lease IDs (hex) by label."""
    leases: dict[str, str] = {}

    def ok(*args: str, stdin: str | None = None) -> str:
        r = etcdctl(endpoint, *args, stdin=stdin)
        assert r.returncode == 0, r.text
        return r.stdout

    ok("put", "a", "1")  # 2
    ok("put", "a", "2")  # 3
    ok("put", "b", "x")  # 4
    ok("del", "a")  # 5
    ok("put", "a", "3")  # 6
    ok("txn", stdin='value("b") = "x"\n\nput b y\nput c z\n\n\n')  # 7: two changes, one revision
    ok("put", "big", stdin=BIG)  # 8
    leases["long"] = ok("lease", "grant", "3600").split()[1]
    ok("put", "leased", "l", f"--lease={leases['long']}")  # 9
    leases["gone"] = ok("lease", "grant", "3600").split()[1]
    ok("put", "doomed", "d", f"--lease={leases['gone']}")  # 10
    ok("lease", "revoke", leases["gone"])  # 11: deletes "doomed"
    ok("compact", "4")
    ok("put", "after", "compaction")  # 12
    return leases


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Both servers after the same writes, with a snapshot saved from each."""
    root = tmp_path_factory.mktemp("snapshots")
    with RealEtcd() as etcd, ServerThread() as raftkv:
        out: dict[str, Any] = {"root": root, "server": raftkv}
        for name, endpoint in (("etcd", etcd.endpoint), ("raftkv", raftkv.endpoint)):
            leases = apply_writes(endpoint)
            path = root / f"{name}.db"
            r = etcdctl(endpoint, "snapshot", "save", str(path))
            assert r.returncode == 0, r.text
            assert f"Snapshot saved at {path}" in r.stdout
            get = etcdctl(endpoint, "get", "", "--prefix", "-w", "json")
            out[name] = {"path": path, "leases": leases, "get": json.loads(get.stdout)}
        yield out


def status(path: Path) -> dict[str, Any]:
    r = etcdctl("127.0.0.1:1", "snapshot", "status", str(path), "-w", "json")
    assert r.returncode == 0, r.text
    result: dict[str, Any] = json.loads(r.stdout)
    return result


def database(path: Path) -> bbolt.Database:
    return bbolt.read_db(path.read_bytes()[:-32])


def test_snapshot_status_reports_the_revision_and_key_count_etcd_reports(saved: dict[str, Any]) -> None:
    ours, theirs = status(saved["raftkv"]["path"]), status(saved["etcd"]["path"])
    assert ours["revision"] == theirs["revision"] == 12
    assert ours["totalKey"] == theirs["totalKey"]


def test_the_saved_file_ends_with_the_sha256_of_the_database(saved: dict[str, Any]) -> None:
    data = saved["raftkv"]["path"].read_bytes()
    assert len(data) % 512 == 32  # etcdctl's hasChecksum
    assert hashlib.sha256(data[:-32]).digest() == data[-32:]


def _kvs(db: bbolt.Database, leases: dict[str, str]) -> dict[bytes, dict[str, Any]]:
    labels = {int(h, 16): label for label, h in leases.items()}
    out = {}
    for key, value in db.buckets[b"key"].items():
        assert isinstance(value, bytes)
        kv = kv_pb2.KeyValue.FromString(value)
        out[key] = {
            "key": kv.key, "create": kv.create_revision, "mod": kv.mod_revision, "version": kv.version,
            "value": kv.value, "lease": labels.get(kv.lease, kv.lease),
        }  # fmt: skip
    return out


def test_the_files_hold_etcds_buckets_and_the_same_key_bucket(saved: dict[str, Any]) -> None:
    ours, theirs = database(saved["raftkv"]["path"]), database(saved["etcd"]["path"])
    assert set(ours.buckets) == set(theirs.buckets)
    for name in (b"alarm", b"auth", b"authRoles", b"authUsers", b"cluster", b"members_removed"):
        assert ours.buckets[name] == theirs.buckets[name], name
    assert set(ours.buckets[b"meta"]) == set(theirs.buckets[b"meta"])
    assert ours.buckets[b"meta"][b"finishedCompactRev"] == etcd_db.revision_key(4)
    # Revision keys (tombstones included) and KeyValues, entry for entry, lease IDs by label.
    assert _kvs(ours, saved["raftkv"]["leases"]) == _kvs(theirs, saved["etcd"]["leases"])
    # The long lease is kept with its granted TTL; the revoked one is gone.
    (lease_value,) = ours.buckets[b"lease"].values()
    assert lease_value == etcd_db.lease_pb(int(saved["raftkv"]["leases"]["long"], 16), 3600)
    assert len(theirs.buckets[b"lease"]) == 1


def test_the_stream_is_32_kib_chunks_counting_down_then_the_digest(saved: dict[str, Any]) -> None:
    raftkv: ServerThread = saved["server"]
    with channel(f"http://{raftkv.endpoint}") as ch:
        msgs = list(Stubs(ch).maintenance.Snapshot(pb.SnapshotRequest(), timeout=10))
    *chunks, trailer = msgs
    db = b"".join(m.blob for m in chunks)
    assert len(chunks) >= 2 and all(len(m.blob) == SNAPSHOT_CHUNK_BYTES for m in chunks[:-1])
    assert [m.remaining_bytes for m in chunks] == [len(db) - sum(len(c.blob) for c in chunks[: i + 1])
                                                   for i in range(len(chunks))]  # fmt: skip
    assert chunks[-1].remaining_bytes == 0 and trailer.remaining_bytes == 0
    assert trailer.blob == hashlib.sha256(db).digest()
    assert bbolt.read_db(db).buckets[b"key"]  # the database itself, nothing more
    header = trailer.header
    assert header.member_id == raftkv.backend.member.ID and header.revision == 12


def test_restore_into_real_etcd_serves_raftkvs_keys_revisions_versions_and_leases(saved: dict[str, Any]) -> None:
    ours = saved["raftkv"]
    with restored_etcd(ours["path"], saved["root"]) as etcd:
        got = json.loads(etcdctl(etcd.endpoint, "get", "", "--prefix", "-w", "json").stdout)
        # Every key with its value, create/mod revision, version and lease, as raftkv serves it.
        assert got["kvs"] == ours["get"]["kvs"]
        assert got["header"]["revision"] == ours["get"]["header"]["revision"] == 12
        keys = [kv["key"] for kv in got["kvs"]]
        assert len(keys) == 6  # a, after, b, big, c, leased
        # History before the compaction is gone, after it is there.
        old = etcdctl(etcd.endpoint, "get", "a", "--rev=3")
        assert "required revision has been compacted" in old.stderr
        at5 = etcdctl(etcd.endpoint, "get", "a", "--rev=5", "-w", "json")
        assert "kvs" not in json.loads(at5.stdout)  # deleted at 5
        # The lease came along with its TTL and its key.
        ttl = json.loads(etcdctl(etcd.endpoint, "lease", "timetolive", ours["leases"]["long"], "--keys",
                                 "-w", "json").stdout)  # fmt: skip
        assert ttl["granted-ttl"] == 3600 and ttl["keys"] == ["bGVhc2Vk"]  # "leased"
        # The next write continues raftkv's revisions.
        put = json.loads(etcdctl(etcd.endpoint, "put", "new", "1", "-w", "json").stdout)
        assert put["header"]["revision"] == 13


def test_the_json_gateway_streams_the_same_snapshot_as_result_lines() -> None:
    # etcd's grpc-gateway serves Snapshot at POST /v3/maintenance/snapshot, one
    # {"result": SnapshotResponse} line per message (blob in base64).
    with PortThread() as port:
        assert call(port.url, "POST", "/v3/kv/put", {"key": "YQ==", "value": "MQ=="}).status == 200
        reply = call(port.url, "POST", "/v3/maintenance/snapshot", {})
    assert reply.status == 200
    results = [json.loads(line)["result"] for line in reply.body.splitlines() if line.strip()]
    *chunks, trailer = [base64.b64decode(r["blob"]) for r in results]
    db = b"".join(chunks)
    assert trailer == hashlib.sha256(db).digest()
    (kv,) = bbolt.read_db(db).buckets[b"key"].values()
    assert kv_pb2.KeyValue.FromString(kv).value == b"1"  # type: ignore[arg-type]


def test_maintenance_hash_is_computed_as_etcd_computes_it(tmp_path: Path) -> None:
    # etcd's Maintenance.Hash over its own backend equals our hash of that backend read
    # from its snapshot: the algorithm raftkv's Hash uses is etcd's (bucket names, keys
    # and values in order, CRC-32C, the consistent index left out).
    with RealEtcd() as etcd:
        apply_writes(etcd.endpoint)
        with channel(etcd.endpoint) as ch:
            want = Stubs(ch).maintenance.Hash(pb.HashRequest(), timeout=10).hash
            path = tmp_path / "etcd.db"
            assert etcdctl(etcd.endpoint, "snapshot", "save", str(path)).returncode == 0
            assert Stubs(ch).maintenance.Hash(pb.HashRequest(), timeout=10).hash == want  # nothing changed meanwhile
    db = bbolt.read_db(path.read_bytes()[:-32])
    assert backend_hash(db.buckets, HASH_IGNORES) == want

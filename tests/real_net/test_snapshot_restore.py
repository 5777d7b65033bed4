"""An etcd snapshot file read back into raftkv: ``snapshot status`` and ``snapshot restore``.

* ``etcd_db.from_buckets`` reads exactly what ``etcd_db.buckets`` writes (any
  sequence of puts, deletes, txns, leases and compactions), finishes a
  compaction etcd scheduled but did not finish, and drops a history that
  starts with a tombstone (etcd skips it) except at the compaction revision.
* ``raftkv snapshot status`` prints what ``etcdctl snapshot status`` prints
  for the same file, in each of -w simple, table and json, for a file from a
  real etcd 3.4 and for files raftkv writes (one with branch pages).
* ``raftkv snapshot restore`` writes a data dir a member boots from: a Raft
  snapshot at index N (the member count), term 1, every new member a voter;
  the store, the compaction, the leases with their keys; the identity derived
  from the peer URL and token; nothing of the old membership.
* Bad input is one clear line and exit status 1: a file cut short, a wrong
  digest, no digest without --skip-hash-check, a file that is not bbolt, an
  existing data dir, a name missing from --initial-cluster. Nothing is left
  behind.
"""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kv import api, mvcc
from kv.applier import StateMachine
from kv.member import Member, MemberConfig
from kv.raft.config import RaftConfig
from real_net import bbolt, etcd_db
from real_net.__main__ import parser
from real_net.disk_storage import DiskStorage
from real_net.restore import RestoreConfig, restore
from real_net.server import Identity, member_id_from
from real_net.snapshot_file import crc32c, format_status, status

from .api.support import RealEtcd, etcdctl

pytestmark = pytest.mark.timeout(120)

M1 = api.Member(ID=0x1111, name="old1", peer_urls=("http://10.0.0.1:2380",), client_urls=("http://10.0.0.1:2379",))
M2 = api.Member(ID=0x2222, name="old2", peer_urls=("http://10.0.0.2:2380",))


# --------------------------------------------------------------- from_buckets

ops = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.sampled_from([b"a", b"b", b"c", b"d"]), st.binary(max_size=8)),
        st.tuples(st.just("del"), st.sampled_from([b"a", b"b", b"c", b"d"]), st.just(b"")),
        st.tuples(st.just("lease"), st.sampled_from([b"a", b"b", b"c", b"d"]), st.just(b"")),
        st.tuples(st.just("revoke"), st.just(b""), st.just(b"")),
        st.tuples(st.just("compact"), st.just(b""), st.integers(0, 3).map(lambda n: bytes([n]))),
    ),
    max_size=30,
)


def run_ops(script: list[tuple[str, bytes, bytes]]) -> StateMachine:
    sm = StateMachine(1, {M1.ID: M1, M2.ID: M2})
    leases: list[int] = []
    for index, (op, key, arg) in enumerate(script, start=10):
        req: object
        if op == "put":
            req = api.PutRequest(key=key, value=arg)
        elif op == "del":
            req = api.DeleteRangeRequest(key=key)
        elif op == "lease":
            grant = sm.apply(api.Proposal(1, index, api.LeaseGrantRequest(TTL=60 + index)), index, 0.0)[0]
            leases.append(grant.ID)
            req = api.PutRequest(key=key, value=b"leased", lease=grant.ID)
        elif op == "revoke":
            if not leases:
                continue
            req = api.LeaseRevokeRequest(ID=leases.pop(0))
        else:
            rev = sm.store.revision - arg[0]
            if rev <= sm.store.compact_revision:
                continue
            req = api.CompactionRequest(revision=rev)
        sm.apply(api.Proposal(1, index, req), index, 0.0)
    sm.removed.add(0x3333)
    return sm


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_from_buckets_reads_back_exactly_what_buckets_writes(script: list[tuple[str, bytes, bytes]]) -> None:
    sm = run_ops(script)
    state = etcd_db.capture(sm, 77, api.ResponseHeader(revision=sm.store.revision))
    back = etcd_db.from_buckets(etcd_db.buckets(state))
    assert back.mvcc == state.mvcc
    assert (back.leases, back.members, back.removed, back.consistent_index) == (
        state.leases, state.members, state.removed, 77
    )  # fmt: skip
    assert back.header.revision == sm.store.revision
    # Through the bbolt file as well.
    again = etcd_db.from_buckets(bbolt.read_db(etcd_db.encode(state)).buckets)
    assert again == back


def _kv_pb(key: bytes, create: int, mod: int, version: int, value: bytes) -> bytes:
    from real_net.proto import kv_pb2

    return kv_pb2.KeyValue(key=key, create_revision=create, mod_revision=mod, version=version,
                           value=value).SerializeToString()  # fmt: skip


def test_a_scheduled_but_unfinished_compaction_is_finished_when_read() -> None:
    key_bucket = {
        etcd_db.revision_key(2): _kv_pb(b"a", 2, 2, 1, b"1"),
        etcd_db.revision_key(3): _kv_pb(b"a", 2, 3, 2, b"2"),
        etcd_db.revision_key(4): _kv_pb(b"a", 2, 4, 3, b"3"),
    }
    meta = {
        etcd_db.SCHEDULED_COMPACT_REV: etcd_db.revision_key(3),
        etcd_db.FINISHED_COMPACT_REV: etcd_db.revision_key(2),
    }
    state = etcd_db.from_buckets({etcd_db.KEY: key_bucket, etcd_db.META: meta})
    snap = mvcc.decode_snapshot(state.mvcc)
    assert (snap.revision, snap.compact_revision) == (4, 3)
    assert [main for main, _, _ in snap.keys[0][1]] == [3, 4]


def test_a_history_starting_with_a_tombstone_is_kept_only_at_the_compaction_revision() -> None:
    tomb = etcd_db.kv_pb2.KeyValue(key=b"x").SerializeToString()
    key_bucket = {
        etcd_db.revision_key(4, tombstone=True): tomb,  # at the compaction: raftkv keeps it
        etcd_db.revision_key(5): _kv_pb(b"y", 5, 5, 1, b"v"),
    }
    meta = {k: etcd_db.revision_key(4) for k in (etcd_db.SCHEDULED_COMPACT_REV, etcd_db.FINISHED_COMPACT_REV)}
    snap = mvcc.decode_snapshot(etcd_db.from_buckets({etcd_db.KEY: key_bucket, etcd_db.META: meta}).mvcc)
    assert [k for k, _ in snap.keys] == [b"x", b"y"]
    meta = {k: etcd_db.revision_key(3) for k in (etcd_db.SCHEDULED_COMPACT_REV, etcd_db.FINISHED_COMPACT_REV)}
    snap = mvcc.decode_snapshot(etcd_db.from_buckets({etcd_db.KEY: key_bucket, etcd_db.META: meta}).mvcc)
    assert [k for k, _ in snap.keys] == [b"y"]  # etcd's restore skips it too
    assert snap.revision == 5


def test_a_database_without_etcds_buckets_is_refused_by_name() -> None:
    with pytest.raises(Exception, match="neither a 'key' nor a 'meta' bucket"):
        etcd_db.from_buckets({b"other": {b"k": b"v"}})


# --------------------------------------------------------------------- status


def test_crc32c_is_castagnoli() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the standard check value
    assert crc32c(b"") == 0
    assert crc32c(b"456789", crc32c(b"123")) == 0xE3069283  # continues like hash.Hash32.Write


@pytest.fixture(scope="module")
def etcd_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """`etcdctl snapshot save` of a real etcd 3.4 after versions, a delete, a lease and a compaction."""
    path = tmp_path_factory.mktemp("etcdsnap") / "etcd.db"
    with RealEtcd() as etcd:
        for args in (("put", "a", "1"), ("put", "a", "2"), ("put", "b", "x"), ("put", "a", "3"), ("del", "b")):
            assert etcdctl(etcd.endpoint, *args).returncode == 0
        lease = etcdctl(etcd.endpoint, "lease", "grant", "600").stdout.split()[1]
        assert etcdctl(etcd.endpoint, "put", "leased", "v", f"--lease={lease}").returncode == 0
        assert etcdctl(etcd.endpoint, "compaction", "4").returncode == 0
        assert etcdctl(etcd.endpoint, "put", "c", "y").returncode == 0
        r = etcdctl(etcd.endpoint, "snapshot", "save", str(path))
        assert r.returncode == 0, r.text
    yield path


def raftkv(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "real_net", *args], capture_output=True, text=True, timeout=60)


def raftkv_files(root: Path) -> list[Path]:
    """Files raftkv writes: a small state with its sha256 trailer, and ~600 keys (branch
    pages, a size in the tens of kB) without one."""
    small = run_ops([("put", b"a", b"1"), ("put", b"a", b"2"), ("lease", b"b", b""), ("del", b"a", b"")])
    big = StateMachine(1, {M1.ID: M1})
    rng = random.Random(7)
    for i in range(600):
        big.apply(api.Proposal(1, i, api.PutRequest(key=b"k%04d" % i, value=rng.randbytes(rng.randrange(120)))), i, 0)
    out = []
    for name, sm, trailer in (("small.db", small, True), ("big.db", big, False)):
        db = etcd_db.encode(etcd_db.capture(sm, 5, api.ResponseHeader()))
        path = root / name
        path.write_bytes(db + (hashlib.sha256(db).digest() if trailer else b""))
        out.append(path)
    return out


def test_status_prints_what_etcdctl_prints_for_the_same_file(etcd_file: Path, tmp_path: Path) -> None:
    for path in [etcd_file, *raftkv_files(tmp_path)]:
        for fmt in ("simple", "table", "json"):
            ours = raftkv("snapshot", "status", str(path), "-w", fmt)
            theirs = etcdctl("127.0.0.1:1", "snapshot", "status", str(path), "-w", fmt)
            assert theirs.returncode == 0, theirs.text
            assert (ours.returncode, ours.stdout) == (0, theirs.stdout), (path.name, fmt, ours.stderr)
    # The default is etcdctl's: simple.
    assert raftkv("snapshot", "status", str(etcd_file)).stdout == format_status(
        status(etcd_file.read_bytes()), "simple"
    )


# -------------------------------------------------------------------- restore


def test_restore_writes_a_data_dir_a_member_boots_from(etcd_file: Path, tmp_path: Path) -> None:
    peers = {"n1": "https://127.0.0.1:12380", "n2": "https://127.0.0.1:12480", "n3": "https://127.0.0.1:12580"}
    initial = ",".join(f"{n}={u}" for n, u in peers.items())
    data_dir = tmp_path / "n2"
    done = restore(RestoreConfig(etcd_file, name="n2", data_dir=data_dir, initial_cluster=initial,
                                 initial_cluster_token="tok", initial_advertise_peer_urls=peers["n2"]))  # fmt: skip
    ids = {n: member_id_from([u], "tok") for n, u in peers.items()}
    assert (done.revision, done.compact_revision, done.keys, done.leases) == (8, 4, 3, 1)
    identity = Identity.load(data_dir / "member" / "identity.json")
    assert (identity.name, identity.member_id, identity.join) == ("n2", ids["n2"], False)
    with DiskStorage(data_dir / "member") as storage:
        snap = storage.snapshot()
        assert (snap.metadata.index, snap.metadata.term) == (3, 1)
        assert snap.metadata.conf_state.voters == tuple(sorted(ids.values()))
        assert (storage.hard_state.term, storage.hard_state.commit, storage.last_index()) == (1, 3, 3)
        config = MemberConfig(raft=RaftConfig(id=ids["n2"]), name="n2", cluster_id=identity.cluster_id)
        member = Member(config, storage, random.Random(1), 0.0, {m.ID: m for m in identity.members})
        store = member.sm.store
        assert (store.revision, store.compact_revision) == (8, 4)
        a = store.get(b"a")
        assert a is not None and (a.value, a.create_revision, a.mod_revision, a.version) == (b"3", 2, 5, 3)
        old = store.get(b"a", 4)
        assert old is not None and old.value == b"2"
        assert store.get(b"b") is None and store.get(b"b", 5) is not None
        leased = store.get(b"leased")
        assert leased is not None and leased.lease
        lease = member.sm.lessor.lookup(leased.lease)
        assert lease is not None and lease.ttl == 600 and lease.keys == {b"leased"}
        # Only the new members: the etcd member the snapshot came from is gone.
        assert [(m.name, m.ID) for m in member.sm.member_list()] == sorted(
            ((n, i) for n, i in ids.items()), key=lambda t: t[1]
        )
        assert member.sm.removed == set()


def test_bad_files_are_one_clear_error_and_leave_nothing_behind(etcd_file: Path, tmp_path: Path) -> None:
    good = etcd_file.read_bytes()
    cases = {
        "truncated.db": (good[:10_000], [], "snapshot missing hash but --skip-hash-check=false"),
        "truncated-skip.db": (good[:10_000], ["--skip-hash-check"], "do not fit a 10000-byte file"),
        "digest.db": (good[:-1] + bytes([good[-1] ^ 1]), [], "expected sha256 "),
        "flipped.db": (good[:5000] + bytes([good[5000] ^ 0xFF]) + good[5001:], [], "expected sha256 "),
        "nodigest.db": (good[:-32], [], "snapshot missing hash but --skip-hash-check=false"),
        "random.db": (random.Random(3).randbytes(8192), ["--skip-hash-check"], "not a bbolt database"),
        "text.db": (b"hello\n" * 100, ["--skip-hash-check"], "not a bbolt database"),
    }
    for name, (data, flags, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        target = tmp_path / f"out-{name}"
        r = raftkv("snapshot", "restore", str(path), "--data-dir", str(target), *flags)
        assert r.returncode == 1, (name, r)
        assert message in r.stderr and "Traceback" not in r.stderr, (name, r.stderr)
        assert r.stderr.startswith(f"raftkv: error: {path}: ") and r.stderr.count("\n") == 1, r.stderr
        assert not target.exists() and list(tmp_path.glob(f".out-{name}*")) == []
    # A db file copied from a data dir (no digest) restores with --skip-hash-check.
    r = raftkv("snapshot", "restore", str(tmp_path / "nodigest.db"), "--data-dir", str(tmp_path / "ok"),
               "--skip-hash-check")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "restored revision 8 (compacted at 4; 3 keys, 1 leases)" in r.stdout
    # status of a file that is not bbolt fails the same way.
    r = raftkv("snapshot", "status", str(tmp_path / "text.db"))
    assert r.returncode == 1 and "not a bbolt database" in r.stderr and "Traceback" not in r.stderr


def test_restore_refuses_an_existing_data_dir_and_a_member_outside_the_cluster(etcd_file: Path, tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    r = raftkv("snapshot", "restore", str(etcd_file), "--data-dir", str(tmp_path / "busy"))
    assert r.returncode == 1 and f'data-dir "{tmp_path / "busy"}" exists' in r.stderr, r.stderr
    r = raftkv("snapshot", "restore", str(etcd_file), "--data-dir", str(tmp_path / "x"), "--name", "n9",
               "--initial-cluster", "n1=http://127.0.0.1:2380")  # fmt: skip
    assert r.returncode == 1 and "initial-cluster must include this member's name 'n9'" in r.stderr, r.stderr
    r = raftkv("snapshot", "restore", str(etcd_file), "--data-dir", str(tmp_path / "x"), "--name", "n1",
               "--initial-cluster", "n1=http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://h:1")  # fmt: skip
    assert r.returncode == 1 and "but initial-advertise-peer-urls is http://h:1" in r.stderr, r.stderr
    assert not (tmp_path / "x").exists()
    # etcdctl's defaults: member "default" at http://localhost:2380, data dir default.etcd.
    r = subprocess.run([sys.executable, "-m", "real_net", "snapshot", "restore", str(etcd_file)],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    identity = json.loads((tmp_path / "default.etcd" / "member" / "identity.json").read_text())
    assert identity["members"] == [
        {"id": f"{member_id_from(['http://localhost:2380'], 'etcd-cluster'):x}", "name": "default",
         "peer_urls": ["http://localhost:2380"], "is_learner": False}
    ]  # fmt: skip


def test_cluster_restore_checks_the_file_before_writing_anything(etcd_file: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(etcd_file.read_bytes()[:-1])
    r = raftkv("cluster", "--nodes", "1", "--data-dir", str(tmp_path / "c"), "--restore", str(bad))
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr == f"raftkv: error: {bad}: snapshot missing hash but --skip-hash-check=false\n"
    assert not (tmp_path / "c").exists()


def test_help_documents_the_restore_flags_as_etcdctl_names_them() -> None:
    sub = next(a for a in parser()._actions if a.dest == "command").choices  # type: ignore[attr-defined]
    assert "--restore" in sub["cluster"].format_help()
    snap = next(a for a in sub["snapshot"]._actions if a.dest == "snapshot_command").choices
    text = snap["restore"].format_help()
    for flag in ("--data-dir", "--name", "--initial-cluster ", "--initial-cluster-token",
                 "--initial-advertise-peer-urls", "--skip-hash-check"):  # fmt: skip
        assert flag in text, flag
    assert "-w {simple,table,json}" in snap["status"].format_help()

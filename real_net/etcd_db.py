"""A member's state as etcd 3.4's backend database: the file Maintenance.Snapshot streams.

Why: ``etcdctl snapshot save`` stores whatever the Snapshot RPC streams, and
``snapshot status`` / ``snapshot restore`` then read it as etcd's own bbolt
backend. So raftkv writes its state in etcd's schema, bucket by bucket, and
a raftkv snapshot restores into a real etcd with every key, value, revision,
version and lease intact.

The schema (etcd 3.4: mvcc/kvstore.go, mvcc/kvstore_txn.go, mvcc/revision.go,
lease/lessor.go, etcdserver/api/membership/store.go, auth/store.go; checked
against a snapshot taken from a real etcd 3.4 with ``real_net.bbolt.read_db``):

* ``key``: one entry per kept version. Key: the 17-byte revision, 8-byte
  big-endian main revision, ``_``, 8-byte big-endian sub revision; a delete's
  tombstone has a ``t`` appended and its value is a KeyValue holding only the
  key. Value: the ``mvccpb.KeyValue`` protobuf. etcd rebuilds its index, its
  current revision and each key's lease attachment from this bucket alone.
* ``meta``: ``consistent_index`` (8-byte big-endian applied index);
  ``scheduledCompactRev`` and ``finishedCompactRev`` (17-byte revisions, sub 0)
  once a compaction happened. 3.4 has no ``term`` key (3.5 added it).
* ``lease``: 8-byte big-endian ID -> ``leasepb.Lease{ID=1, TTL=2}`` (etcd
  writes RemainingTTL=3 only for checkpointed leases, which raftkv has not).
* ``members``: the member ID in lowercase hex -> Go's ``json.Marshal`` of
  etcd's Member (``{"id":N,"peerURLs":[..],"isLearner":true,"name":..,
  "clientURLs":[..]}``, isLearner/name/clientURLs omitted when empty);
  ``members_removed``: hex ID -> ``removed``.
* ``cluster``: ``clusterVersion`` -> ``3.4.0`` (the schema written here is 3.4's).
* ``auth``: ``authRevision`` -> 8-byte big-endian 1 (etcd writes it once at
  start); ``authUsers``, ``authRoles``, ``alarm``: empty (no auth, no alarms).

Revisions, versions and compaction are raftkv's (kv/mvcc.py keeps what
etcd keeps, except that it also keeps a tombstone made exactly at the
compaction revision; etcd's restore skips a tombstone of a key it has not
seen, so that extra entry changes nothing after a restore).

``from_buckets`` reads the same schema back (what ``raftkv snapshot restore``
starts from), as etcd 3.4's restore reads its backend (mvcc/kvstore.go
``restore``, lease/lessor.go ``initAndRecover``): the current revision is the
newest revision in ``key`` (at least 1, at least the finished compaction);
a compaction that was scheduled but not finished is finished here; a key's
lease is only the KeyValue's ``lease`` field.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from kv import api
from kv import mvcc
from kv.applier import StateMachine
from kv.errors import CorruptRecord, RaftKVError
from real_net import bbolt
from real_net.proto import kv_pb2

# The cluster version a 3.4 member records; the schema below is 3.4's.
CLUSTER_VERSION = "3.4.0"

KEY = b"key"
META = b"meta"
LEASE = b"lease"
MEMBERS = b"members"
MEMBERS_REMOVED = b"members_removed"
CLUSTER = b"cluster"
ALARM = b"alarm"
AUTH = b"auth"
AUTH_USERS = b"authUsers"
AUTH_ROLES = b"authRoles"

CONSISTENT_INDEX = b"consistent_index"
SCHEDULED_COMPACT_REV = b"scheduledCompactRev"
FINISHED_COMPACT_REV = b"finishedCompactRev"
CLUSTER_VERSION_KEY = b"clusterVersion"
AUTH_REVISION = b"authRevision"

_U64 = struct.Struct(">Q")
_REVISION = struct.Struct(">QcQ")  # main, '_', sub: 17 bytes, no padding
_TOMBSTONE = b"t"


@dataclass(frozen=True, slots=True)
class BackendState:
    """One member's replicated state at one applied index, captured at one instant of
    its event loop, plus the response header of that instant.

    ``mvcc`` is ``MVCCStore.snapshot()``'s bytes: every kept version, taken in one
    call, so nothing the loop does later can change it (decoding and encoding run
    in a worker thread)."""

    header: api.ResponseHeader
    consistent_index: int
    mvcc: bytes
    leases: tuple[tuple[int, int], ...]  # (ID, granted TTL), ID order
    members: tuple[api.Member, ...]
    removed: tuple[int, ...]


def capture(
    sm: StateMachine,
    applied_index: int,
    header: api.ResponseHeader,
    members: tuple[api.Member, ...] | None = None,
) -> BackendState:
    """The state machine's state now, for a snapshot at `applied_index` (etcd's
    consistent index: the last log entry applied). Call it on the loop that applies,
    between two applies. `members` overrides the state machine's table (a Backend
    without Raft keeps its own)."""
    lessor = sm.lessor
    leases = []
    for status in lessor.leases().leases:
        lease = lessor.lookup(status.ID)
        if lease is not None:
            leases.append((lease.ID, lease.ttl))
    return BackendState(
        header=header,
        consistent_index=applied_index,
        mvcc=sm.store.snapshot(),
        leases=tuple(leases),
        members=sm.member_list() if members is None else members,
        removed=tuple(sorted(sm.removed)),
    )


def revision_key(main: int, sub: int = 0, tombstone: bool = False) -> bytes:
    """etcd's revToBytes (plus markTombstone): the key of one version in ``key``."""
    return _REVISION.pack(main, b"_", sub) + (_TOMBSTONE if tombstone else b"")


def parse_revision_key(key: bytes) -> tuple[int, int, bool]:
    """(main, sub, is_tombstone) of a ``key`` bucket key."""
    main, _, sub = _REVISION.unpack_from(key, 0)
    return main, sub, key[_REVISION.size :] == _TOMBSTONE


def member_json(m: api.Member) -> bytes:
    """Go's json.Marshal of etcd's membership.Member: field order as the struct
    declares it, empty omitempty fields left out, no spaces, and <, >, & escaped as
    Go escapes them."""
    obj: dict[str, object] = {"id": m.ID, "peerURLs": list(m.peer_urls)}
    if m.is_learner:
        obj["isLearner"] = True
    if m.name:
        obj["name"] = m.name
    if m.client_urls:
        obj["clientURLs"] = list(m.client_urls)
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return text.encode()


def lease_pb(lease_id: int, ttl: int) -> bytes:
    """leasepb.Lease{ID, TTL} (proto3: zero fields left out)."""
    out = bytearray()
    for field_number, value in ((1, lease_id), (2, ttl)):
        if value:
            out += _varint(field_number << 3) + _varint(value & 0xFFFFFFFFFFFFFFFF)
    return bytes(out)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def buckets(state: BackendState) -> dict[bytes, dict[bytes, bytes]]:
    """Every bucket etcd 3.4 keeps, filled from `state`."""
    snap = mvcc.decode_snapshot(state.mvcc)
    key_bucket: dict[bytes, bytes] = {}
    for key, versions in snap.keys:
        for main, sub, kv in versions:
            if kv is None:
                key_bucket[revision_key(main, sub, tombstone=True)] = kv_pb2.KeyValue(key=key).SerializeToString()
            else:
                pb = kv_pb2.KeyValue(
                    key=key,
                    create_revision=kv.create_revision,
                    mod_revision=main,
                    version=kv.version,
                    value=kv.value,
                    lease=kv.lease,
                )
                key_bucket[revision_key(main, sub)] = pb.SerializeToString()
    compact_revision = snap.compact_revision
    meta = {CONSISTENT_INDEX: _U64.pack(state.consistent_index)}
    if compact_revision > 0:
        # etcd writes scheduled before compacting and finished after; a snapshot of a
        # finished compaction has both at the same revision.
        meta[SCHEDULED_COMPACT_REV] = revision_key(compact_revision)
        meta[FINISHED_COMPACT_REV] = revision_key(compact_revision)
    return {
        ALARM: {},
        AUTH: {AUTH_REVISION: _U64.pack(1)},
        AUTH_ROLES: {},
        AUTH_USERS: {},
        CLUSTER: {CLUSTER_VERSION_KEY: CLUSTER_VERSION.encode()},
        KEY: key_bucket,
        LEASE: {_U64.pack(i): lease_pb(i, ttl) for i, ttl in state.leases},
        MEMBERS: {format(m.ID, "x").encode(): member_json(m) for m in state.members},
        MEMBERS_REMOVED: {format(i, "x").encode(): b"removed" for i in state.removed},
        META: meta,
    }


def encode(state: BackendState) -> bytes:
    """The bbolt file etcd 3.4 would hold for this state (4 KiB pages)."""
    return bbolt.write_db(buckets(state))


# ------------------------------------------------------------------- reading


def from_buckets(db: Mapping[bytes, Mapping[bytes, object]]) -> BackendState:
    """The state an etcd 3.4 backend (or raftkv's own export of one) holds: the inverse
    of ``buckets``. Raises CorruptRecord, naming the bucket and key, on anything that is
    not etcd's schema. Buckets etcd creates on start may be missing (they are empty)."""
    if KEY not in db and META not in db:
        raise CorruptRecord("not an etcd backend: the database has neither a 'key' nor a 'meta' bucket")
    meta = _bucket(db, META)
    finished = _compact_revision(meta, FINISHED_COMPACT_REV)
    scheduled = _compact_revision(meta, SCHEDULED_COMPACT_REV)
    versions: dict[bytes, list[tuple[int, int, api.KeyValue | None]]] = {}
    current = 1
    for rkey in sorted(_bucket(db, KEY)):
        value = _bytes(db, KEY, rkey)
        if len(rkey) not in (_REVISION.size, _REVISION.size + 1) or rkey[8:9] != b"_" or (
            len(rkey) > _REVISION.size and rkey[-1:] != _TOMBSTONE
        ):
            raise CorruptRecord(f"key bucket: {rkey!r} is not a revision (8 bytes, '_', 8 bytes[, 't'])")
        main, sub, tombstone = parse_revision_key(rkey)
        pb = kv_pb2.KeyValue()
        try:
            pb.ParseFromString(value)
        except DecodeError as e:
            raise CorruptRecord(f"key bucket: revision {main}.{sub}: not an mvccpb.KeyValue: {e}") from None
        current = max(current, main)
        history = versions.setdefault(pb.key, [])
        if tombstone:
            # etcd's restore skips a tombstone of a key it has not seen; raftkv keeps one
            # made at the compaction revision (kv/mvcc.py), so only that one is kept.
            if history or main == finished:
                history.append((main, sub, None))
            elif not history:
                del versions[pb.key]
            continue
        kv = api.KeyValue(pb.key, pb.create_revision, main, pb.version, pb.value, pb.lease)
        history.append((main, sub, kv))
    current = max(current, finished)
    contents = mvcc.SnapshotContents(current, finished, sorted(versions.items()))
    store_bytes = mvcc.encode_snapshot(contents)
    if scheduled > finished:
        # etcd finishes an interrupted compaction when it opens the backend.
        store = mvcc.MVCCStore()
        store.restore(store_bytes)
        try:
            store.compact(api.CompactionRequest(revision=scheduled))
        except RaftKVError as e:
            raise CorruptRecord(f"meta bucket: scheduled compaction at {scheduled} cannot run: {e}") from None
        store_bytes = store.snapshot()
    leases = []
    for lkey in sorted(_bucket(db, LEASE)):
        fields = _read_proto_varints(_bytes(db, LEASE, lkey), f"lease bucket: {lkey.hex()}")
        lease_id = _signed64(fields.get(1, 0))
        if lease_id <= 0:
            raise CorruptRecord(f"lease bucket: {lkey.hex()}: lease ID {lease_id} is not positive")
        leases.append((lease_id, _signed64(fields.get(2, 0))))
    members = []
    for mkey in sorted(_bucket(db, MEMBERS)):
        members.append(_member_from_json(_bytes(db, MEMBERS, mkey), mkey))
    removed = []
    for rkey in sorted(_bucket(db, MEMBERS_REMOVED)):
        try:
            removed.append(int(rkey, 16))
        except ValueError:
            raise CorruptRecord(f"members_removed bucket: {rkey!r} is not a hex member ID") from None
    index = meta.get(CONSISTENT_INDEX)
    return BackendState(
        header=api.ResponseHeader(revision=current),
        consistent_index=_U64.unpack(index)[0] if isinstance(index, bytes) and len(index) == 8 else 0,
        mvcc=store_bytes,
        leases=tuple(sorted(leases)),
        members=tuple(sorted(members, key=lambda m: m.ID)),
        removed=tuple(sorted(removed)),
    )


def _bucket(db: Mapping[bytes, Mapping[bytes, object]], name: bytes) -> Mapping[bytes, object]:
    b = db.get(name, {})
    if not isinstance(b, Mapping):
        raise CorruptRecord(f"{name.decode()} is not a bucket")
    return b


def _bytes(db: Mapping[bytes, Mapping[bytes, object]], bucket: bytes, key: bytes) -> bytes:
    value = db[bucket][key]
    if not isinstance(value, bytes):
        raise CorruptRecord(f"{bucket.decode()} bucket: {key!r} is a nested bucket, not a value")
    return value


def _compact_revision(meta: Mapping[bytes, object], name: bytes) -> int:
    value = meta.get(name)
    if value is None:
        return 0
    if not isinstance(value, bytes) or len(value) != _REVISION.size:
        raise CorruptRecord(f"meta bucket: {name.decode()} is not a 17-byte revision")
    main, _, _ = parse_revision_key(value)
    return main


def _read_proto_varints(data: bytes, what: str) -> dict[int, int]:
    """The varint fields of a protobuf message (leasepb.Lease has only those)."""
    fields: dict[int, int] = {}
    pos = 0
    while pos < len(data):
        tag, pos = _read_varint(data, pos, what)
        if tag & 7 != 0:
            raise CorruptRecord(f"{what}: not a leasepb.Lease (field {tag >> 3} has wire type {tag & 7})")
        fields[tag >> 3], pos = _read_varint(data, pos, what)
    return fields


def _read_varint(data: bytes, pos: int, what: str) -> tuple[int, int]:
    n = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise CorruptRecord(f"{what}: truncated or overlong varint")
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n & 0xFFFFFFFFFFFFFFFF, pos


def _signed64(n: int) -> int:
    return n - (1 << 64) if n >= 1 << 63 else n


def _member_from_json(raw: bytes, key: bytes) -> api.Member:
    try:
        d = json.loads(raw)
        return api.Member(
            ID=int(d["id"]),
            name=str(d.get("name", "")),
            peer_urls=tuple(str(u) for u in d.get("peerURLs") or ()),
            client_urls=tuple(str(u) for u in d.get("clientURLs") or ()),
            is_learner=bool(d.get("isLearner", False)),
        )
    except (ValueError, KeyError, TypeError) as e:
        raise CorruptRecord(f"members bucket: {key!r}: not etcd's member JSON: {e}") from None

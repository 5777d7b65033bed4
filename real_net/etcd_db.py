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
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

from kv import api
from kv import mvcc
from kv.applier import StateMachine
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

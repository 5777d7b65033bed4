"""The multi-version key-value store: etcd v3's data model (etcd server/mvcc), in memory.

Revisions
    One global revision counts write transactions. An empty store is at
    revision 1. A write that changes something (a put, a delete that finds a
    key, a txn whose chosen branch does either, a lease revoke that deletes
    keys) makes exactly one new revision; its changes are ordered inside it by
    sub-revision. A write that changes nothing leaves the revision alone (etcd:
    the write txn only bumps ``currentRev`` when it has changes).

Keys
    Each key keeps its history: one version per revision that touched it, a
    tombstone for a delete. ``create_revision`` is the revision of the first put
    of the key's current life, ``version`` counts puts in that life (a delete
    ends it; a later put starts again at version 1), ``mod_revision`` is the
    revision of the version itself.

Compaction at C
    Drops every version that no read at revision >= C can see: for each key,
    everything older than its newest version at or below C; that newest
    version goes too if it is a tombstone older than C. A tombstone made *at* C
    is kept until a later compaction, so that a watch that starts at C (etcd
    allows ``start_revision == compact_revision``) still gets that delete
    event; etcd drops it, and such a watcher silently misses the delete.

Leases
    The store knows leases only through a small ``LeaseIndex`` (the Lessor
    implements it), as etcd's mvcc holds a ``lease.Lessor``: a put with a lease
    needs the lease to exist, and puts/deletes attach and detach keys.

Every write returns its response *and* the ``Event``s it made, in
(revision, sub-revision) order, for the watch hub.

Pure and deterministic: no clocks, no I/O, no iteration over hash-ordered
containers; the same writes give the same bytes from ``snapshot()`` and the
same ``hash_kv()`` on every member.
"""

from __future__ import annotations

import struct
import zlib
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any, Protocol

import msgpack
from sortedcontainers import SortedDict

from kv.api import (
    Compare,
    CompareResult,
    CompareTarget,
    CompactionRequest,
    CompactionResponse,
    DeleteRangeRequest,
    DeleteRangeResponse,
    Event,
    EventType,
    HashKVResponse,
    KeyValue,
    PutRequest,
    PutResponse,
    RangeRequest,
    RangeResponse,
    ResponseHeader,
    ResponseOp,
    SortOrder,
    SortTarget,
    TxnRequest,
    TxnResponse,
)
from kv.errors import CorruptRecord, ErrCompacted, ErrFutureRev, ErrKeyNotFound, ErrLeaseNotFound
from kv.keyrange import in_range
from kv.request_checks import check_intervals

SNAPSHOT_FORMAT = 1

WriteRequest = PutRequest | DeleteRangeRequest | TxnRequest


class LeaseIndex(Protocol):
    """What the store needs from the lessor (etcd mvcc's view of ``lease.Lessor``)."""

    def exists(self, lease_id: int) -> bool:
        """True if the lease is granted and not revoked."""
        ...

    def attach(self, lease_id: int, key: bytes) -> None:
        """`key` now carries `lease_id` (its keys are deleted when it is revoked)."""
        ...

    def detach(self, lease_id: int, key: bytes) -> None:
        """`key` no longer carries `lease_id`; a no-op if the lease is already gone."""
        ...


class _History:
    """One key's versions, oldest first. ``kvs[i] is None`` marks a tombstone."""

    __slots__ = ("mains", "subs", "kvs")

    def __init__(self) -> None:
        self.mains: list[int] = []
        self.subs: list[int] = []
        self.kvs: list[KeyValue | None] = []

    def at(self, rev: int) -> KeyValue | None:
        """The live version at revision `rev`, or None (absent or deleted)."""
        mains = self.mains
        if mains[-1] <= rev:
            return self.kvs[-1]
        i = bisect_right(mains, rev) - 1
        return self.kvs[i] if i >= 0 else None


class _Write:
    """One write transaction in progress: every change gets revision begin+1."""

    __slots__ = ("begin", "events")

    def __init__(self, begin: int) -> None:
        self.begin = begin
        self.events: list[Event] = []

    @property
    def rev(self) -> int:
        # What a read inside the txn sees as "current" (etcd storeTxnWrite.Range).
        return self.begin + 1 if self.events else self.begin


class MVCCStore:
    def __init__(self, leases: LeaseIndex | None = None) -> None:
        """`leases`: the lessor; without one no lease exists, so a put with a lease fails."""
        self.leases = leases
        self._index: Any = SortedDict()  # bytes -> _History
        self._revision = 1
        self._compact_revision = 0
        # Keys changed at each revision, in sub-revision order, for revisions
        # [_log_base, _revision]: lets watchers replay history without scanning every key.
        self._log_base = 2
        self._log: list[list[bytes]] = []

    # ---------------------------------------------------------------- state

    @property
    def revision(self) -> int:
        return self._revision

    @property
    def compact_revision(self) -> int:
        return self._compact_revision

    def get(self, key: bytes, revision: int = 0) -> KeyValue | None:
        """The live version of `key` at `revision` (0 = current), or None."""
        h = self._index.get(key)
        if h is None:
            return None
        kv: KeyValue | None = h.at(revision if revision > 0 else self._revision)
        return kv

    def db_size(self) -> int:
        """Approximate bytes held (keys, values, and a fixed cost per version)."""
        total = 0
        for key, h in self._index.items():
            for kv in h.kvs:
                total += len(key) + 32 + (len(kv.value) if kv is not None else 0)
        return total

    # ---------------------------------------------------------------- reads

    def range(self, req: RangeRequest) -> RangeResponse:
        return self._range(req, self._revision)

    def _range(self, req: RangeRequest, current: int) -> RangeResponse:
        rev = req.revision if req.revision > 0 else current
        if rev > current:
            raise ErrFutureRev()
        if rev < self._compact_revision:
            # etcd: rev < compactMainRev; reading *at* the compact revision is fine.
            raise ErrCompacted()
        kvs = self._live(req.key, req.range_end, rev)
        header = ResponseHeader(revision=current)  # etcd reports the current revision, not `rev`
        count = len(kvs)
        if req.count_only:
            return RangeResponse(header=header, count=count)
        # etcd prunes by these filters after counting: `count` ignores them.
        if req.max_mod_revision:
            kvs = [kv for kv in kvs if kv.mod_revision <= req.max_mod_revision]
        if req.min_mod_revision:
            kvs = [kv for kv in kvs if kv.mod_revision >= req.min_mod_revision]
        if req.max_create_revision:
            kvs = [kv for kv in kvs if kv.create_revision <= req.max_create_revision]
        if req.min_create_revision:
            kvs = [kv for kv in kvs if kv.create_revision >= req.min_create_revision]
        order = req.sort_order
        if req.sort_target != SortTarget.KEY and order == SortOrder.NONE:
            # etcd: results come in key order, so only a non-key target implies a sort.
            order = SortOrder.ASCEND
        if order != SortOrder.NONE and not (order == SortOrder.ASCEND and req.sort_target == SortTarget.KEY):
            # Stable, so ties stay in key order (etcd's sort.Sort leaves ties unspecified).
            kvs.sort(key=_SORT_KEYS[req.sort_target], reverse=order == SortOrder.DESCEND)
        more = False
        if req.limit > 0 and len(kvs) > req.limit:
            kvs = kvs[: req.limit]
            more = True
        if req.keys_only:
            kvs = [replace(kv, value=b"") for kv in kvs]
        return RangeResponse(header=header, kvs=tuple(kvs), more=more, count=count)

    def _keys(self, key: bytes, range_end: bytes) -> Iterator[bytes]:
        if not range_end:
            if key in self._index:
                yield key
            return
        hi = None if range_end == b"\x00" else range_end
        if hi is not None and key >= hi:
            return
        yield from self._index.irange(key, hi, inclusive=(True, False))

    def _live(self, key: bytes, range_end: bytes, rev: int) -> list[KeyValue]:
        out: list[KeyValue] = []
        index = self._index
        for k in self._keys(key, range_end):
            kv = index[k].at(rev)
            if kv is not None:
                out.append(kv)
        return out

    # --------------------------------------------------------------- writes

    def put(self, req: PutRequest) -> tuple[PutResponse, list[Event]]:
        self._check_put(req)
        w = _Write(self._revision)
        resp = self._put(w, req)
        self._end(w)
        return resp, w.events

    def delete_range(self, req: DeleteRangeRequest) -> tuple[DeleteRangeResponse, list[Event]]:
        w = _Write(self._revision)
        resp = self._delete_range(w, req)
        self._end(w)
        return resp, w.events

    def delete_keys(self, keys: Iterable[bytes]) -> tuple[int, list[Event]]:
        """Delete these keys in one revision (a lease revoke: etcd deletes a lease's keys
        in one write txn, in key order). Returns (the revision after, events)."""
        w = _Write(self._revision)
        for k in sorted(set(keys)):
            self._delete_range(w, DeleteRangeRequest(key=k))
        self._end(w)
        return self._revision, w.events

    def txn(self, req: TxnRequest) -> tuple[TxnResponse, list[Event]]:
        """Atomic: compares (nested ones too) are evaluated against the state before any
        op runs, every op of the chosen path is checked before any runs (etcd:
        compareToPath, then checkRequests), so a failing txn changes nothing."""
        # Also here, not only in the API check: two changes of one key in one revision
        # would corrupt the history, so the store refuses them whoever calls it.
        check_intervals(req.success)
        check_intervals(req.failure)
        path: list[bool] = []
        self._choose_path(req, path)
        self._check_path(req, iter(path), puts=True)
        self._check_path(req, iter(path), puts=False)
        w = _Write(self._revision)
        resp = self._txn(w, req, iter(path))
        self._end(w)
        return replace(resp, header=ResponseHeader(revision=self._revision)), w.events

    def compact(self, req: CompactionRequest) -> CompactionResponse:
        rev = req.revision
        if rev <= self._compact_revision:
            raise ErrCompacted()
        if rev > self._revision:
            raise ErrFutureRev()
        drop_keys: list[bytes] = []
        for k, h in self._index.items():
            mains = h.mains
            if len(mains) == 1 and (h.kvs[0] is not None or mains[0] >= rev):
                continue  # a single live version, or a tombstone still needed: nothing to drop
            i = bisect_right(mains, rev) - 1
            if i < 0:
                continue
            cut = i + 1 if (h.kvs[i] is None and mains[i] < rev) else i
            if cut:
                del mains[:cut]
                del h.subs[:cut]
                del h.kvs[:cut]
                if not mains:
                    drop_keys.append(k)
        for k in drop_keys:
            del self._index[k]
        if rev > self._log_base:
            del self._log[: rev - self._log_base]
            self._log_base = rev
        self._compact_revision = rev
        return CompactionResponse(header=ResponseHeader(revision=self._revision))

    def apply(self, req: object) -> tuple[Any, list[Event]]:
        """Run any KV request (Range, Put, DeleteRange, Txn, Compaction): (response, events).
        Raises the etcd error on failure, having changed nothing."""
        if isinstance(req, PutRequest):
            return self.put(req)
        if isinstance(req, DeleteRangeRequest):
            return self.delete_range(req)
        if isinstance(req, TxnRequest):
            return self.txn(req)
        if isinstance(req, RangeRequest):
            return self.range(req), []
        if isinstance(req, CompactionRequest):
            return self.compact(req), []
        raise TypeError(f"not a KV request: {type(req).__name__}")

    # ------------------------------------------------------------ internals

    def _end(self, w: _Write) -> None:
        if w.events:
            self._revision = w.begin + 1

    def _record(self, w: _Write, key: bytes, kv: KeyValue | None) -> int:
        main = w.begin + 1
        sub = len(w.events)
        h = self._index.get(key)
        if h is None:
            h = _History()
            self._index[key] = h
        h.mains.append(main)
        h.subs.append(sub)
        h.kvs.append(kv)
        if sub == 0:
            self._log.append([])
        self._log[-1].append(key)
        return main

    def _check_put(self, req: PutRequest) -> None:
        if req.ignore_value or req.ignore_lease:
            prev = self.get(req.key)
            if prev is None:
                raise ErrKeyNotFound()
            if req.ignore_lease and prev.lease and self.leases is not None and not self.leases.exists(prev.lease):
                # Only a store restored from a damaged snapshot holds a key whose lease is
                # gone; keeping that lease would fail to attach after the write was recorded
                # (etcd panics there). Refuse before changing anything.
                raise ErrLeaseNotFound()
        if req.lease != 0 and (self.leases is None or not self.leases.exists(req.lease)):
            raise ErrLeaseNotFound()

    def _put(self, w: _Write, req: PutRequest) -> PutResponse:
        key = req.key
        h = self._index.get(key)
        prev = h.kvs[-1] if h is not None else None
        value = prev.value if (req.ignore_value and prev is not None) else req.value
        lease = prev.lease if (req.ignore_lease and prev is not None) else req.lease
        main = w.begin + 1
        if prev is not None:
            kv = KeyValue(key, prev.create_revision, main, prev.version + 1, value, lease)
        else:
            kv = KeyValue(key, main, main, 1, value, lease)
        self._record(w, key, kv)
        if self.leases is not None:
            if prev is not None and prev.lease and prev.lease != lease:
                self.leases.detach(prev.lease, key)
            if lease:
                self.leases.attach(lease, key)
        w.events.append(Event(EventType.PUT, kv, prev))
        return PutResponse(header=ResponseHeader(revision=main), prev_kv=prev if req.prev_kv else None)

    def _delete_range(self, w: _Write, req: DeleteRangeRequest) -> DeleteRangeResponse:
        doomed = self._live(req.key, req.range_end, w.rev)
        main = w.begin + 1
        for prev in doomed:
            self._record(w, prev.key, None)
            if prev.lease and self.leases is not None:
                self.leases.detach(prev.lease, prev.key)
            w.events.append(Event(EventType.DELETE, KeyValue(prev.key, mod_revision=main), prev))
        return DeleteRangeResponse(
            header=ResponseHeader(revision=w.rev),
            deleted=len(doomed),
            prev_kvs=tuple(doomed) if req.prev_kv else (),
        )

    def _choose_path(self, req: TxnRequest, path: list[bool]) -> None:
        ok = all(self._compare(c) for c in req.compare)
        path.append(ok)
        for op in req.success if ok else req.failure:
            if op.request_txn is not None:
                self._choose_path(op.request_txn, path)

    def _check_path(self, req: TxnRequest, path: Iterator[bool], puts: bool) -> None:
        for op in req.success if next(path) else req.failure:
            if op.request_txn is not None:
                self._check_path(op.request_txn, path, puts)
            elif puts and op.request_put is not None:
                self._check_put(op.request_put)
            elif not puts and op.request_range is not None:
                rev = op.request_range.revision
                if rev > self._revision:
                    raise ErrFutureRev()
                if 0 < rev < self._compact_revision:
                    raise ErrCompacted()

    def _txn(self, w: _Write, req: TxnRequest, path: Iterator[bool]) -> TxnResponse:
        succeeded = next(path)
        out: list[ResponseOp] = []
        for op in req.success if succeeded else req.failure:
            if op.request_range is not None:
                out.append(ResponseOp(response_range=self._range(op.request_range, w.rev)))
            elif op.request_put is not None:
                out.append(ResponseOp(response_put=self._put(w, op.request_put)))
            elif op.request_delete_range is not None:
                out.append(ResponseOp(response_delete_range=self._delete_range(w, op.request_delete_range)))
            elif op.request_txn is not None:
                out.append(ResponseOp(response_txn=self._txn(w, op.request_txn, path)))
        return TxnResponse(header=ResponseHeader(revision=w.rev), succeeded=succeeded, responses=tuple(out))

    def _compare(self, c: Compare) -> bool:
        kvs = self._live(c.key, c.range_end, self._revision)
        if not kvs:
            # etcd: a value compare on a missing key always fails (no way to tell
            # "missing" from ""); other targets compare against zeros.
            if c.target == CompareTarget.VALUE:
                return False
            return _compare_kv(c, KeyValue(c.key))
        return all(_compare_kv(c, kv) for kv in kvs)

    # ---------------------------------------------------------- watch feed

    def events(self, key: bytes, range_end: bytes, start_revision: int, end_revision: int = 0) -> list[Event]:
        """Every event on (key, range_end) at revisions [start_revision, end_revision]
        (0 = current), in (revision, sub-revision) order, each with its prev_kv when the
        previous version is still kept (etcd reads it at mod_revision - 1, and leaves it
        out when that read is compacted). ErrCompacted if start_revision < compact_revision."""
        if start_revision < self._compact_revision:
            raise ErrCompacted()
        end = end_revision if end_revision > 0 else self._revision
        lo = max(start_revision, self._log_base)
        out: list[Event] = []
        if lo > end:
            return out
        if not range_end:
            # One key: walk its own history rather than every revision.
            h = self._index.get(key)
            if h is None:
                return out
            i = bisect_left(h.mains, lo)
            while i < len(h.mains) and h.mains[i] <= end:
                out.append(self._event(key, h, i))
                i += 1
            return out
        base = self._log_base
        for main in range(lo, end + 1):
            for k in self._log[main - base]:
                if in_range(k, key, range_end):
                    h = self._index[k]
                    out.append(self._event(k, h, bisect_left(h.mains, main)))
        return out

    @staticmethod
    def _event(key: bytes, h: _History, i: int) -> Event:
        prev = h.kvs[i - 1] if i > 0 else None
        kv = h.kvs[i]
        if kv is None:
            return Event(EventType.DELETE, KeyValue(key, mod_revision=h.mains[i]), prev)
        return Event(EventType.PUT, kv, prev)

    # ----------------------------------------------------------- integrity

    def hash_kv(self, revision: int = 0) -> HashKVResponse:
        """CRC32 over every kept version at or below `revision` (0 = current): equal on
        members that applied the same log. Boundaries as etcd >= 3.5.5's HashByRev
        (ErrCompacted below the compact revision, ErrFutureRev above the current)."""
        if 0 < revision < self._compact_revision:
            raise ErrCompacted()
        if revision > self._revision:
            raise ErrFutureRev()
        rev = revision if revision > 0 else self._revision
        crc = zlib.crc32(b"raftkv-mvcc")
        pack_head = _HASH_HEAD.pack
        pack_kv = _HASH_KV.pack
        for key, h in self._index.items():
            for i, main in enumerate(h.mains):
                if main > rev:
                    break
                kv = h.kvs[i]
                crc = zlib.crc32(pack_head(main, h.subs[i], len(key)), crc)
                crc = zlib.crc32(key, crc)
                if kv is None:
                    crc = zlib.crc32(b"\x00", crc)
                else:
                    crc = zlib.crc32(pack_kv(kv.create_revision, kv.version, kv.lease, len(kv.value)), crc)
                    crc = zlib.crc32(kv.value, crc)
        return HashKVResponse(
            header=ResponseHeader(revision=self._revision),
            hash=crc,
            compact_revision=self._compact_revision,
            hash_revision=rev,
        )

    def snapshot(self) -> bytes:
        """Every kept version, the compact revision and the current revision, as bytes."""
        keys = [(key, list(zip(h.mains, h.subs, h.kvs))) for key, h in self._index.items()]
        return encode_snapshot(SnapshotContents(self._revision, self._compact_revision, keys))

    def restore(self, data: bytes) -> None:
        """Replace the whole state with a snapshot's. The lessor restores its own
        attachments (its snapshot keeps them), so nothing is re-attached here."""
        snap = decode_snapshot(data)
        index: Any = SortedDict()
        changed: dict[int, list[tuple[int, bytes]]] = {}
        base = max(snap.compact_revision, 2)
        for key, versions in snap.keys:
            h = _History()
            for main, sub, kv in versions:
                h.mains.append(main)
                h.subs.append(sub)
                h.kvs.append(kv)
                if main >= base:
                    changed.setdefault(main, []).append((sub, key))
            index[key] = h
        self._index = index
        self._revision = snap.revision
        self._compact_revision = snap.compact_revision
        self._log_base = base
        self._log = [[k for _, k in sorted(changed.get(r, []))] for r in range(base, snap.revision + 1)]


@dataclass(frozen=True, slots=True)
class SnapshotContents:
    """What ``MVCCStore.snapshot()`` holds: every kept version of every key, in key
    order, each as (main revision, sub revision, KeyValue or None for a tombstone)."""

    revision: int
    compact_revision: int
    keys: list[tuple[bytes, list[tuple[int, int, KeyValue | None]]]]


def encode_snapshot(snap: SnapshotContents) -> bytes:
    """``MVCCStore.snapshot()``'s bytes for these contents (also how a store is built
    from elsewhere, e.g. from an etcd backend, and then restored)."""
    keys: list[list[Any]] = []
    for key, versions in snap.keys:
        rows: list[list[Any]] = []
        for main, sub, kv in versions:
            if kv is None:
                rows.append([main, sub])
            else:
                rows.append([main, sub, kv.create_revision, kv.version, kv.value, kv.lease])
        keys.append([key, rows])
    packed: bytes = msgpack.packb([SNAPSHOT_FORMAT, snap.revision, snap.compact_revision, keys], use_bin_type=True)
    return packed


def decode_snapshot(data: bytes) -> SnapshotContents:
    """Read ``MVCCStore.snapshot()``'s bytes (the one place that knows their layout, so
    the store's restore and real_net's etcd backend export read them alike). Raises
    CorruptRecord on anything else."""
    try:
        fmt, revision, compact_revision, raw_keys = msgpack.unpackb(data, raw=False)
        if fmt != SNAPSHOT_FORMAT:
            raise CorruptRecord(f"unsupported mvcc snapshot format {fmt!r}")
        keys: list[tuple[bytes, list[tuple[int, int, KeyValue | None]]]] = []
        for raw_key, raw_versions in raw_keys:
            key = bytes(raw_key)
            versions: list[tuple[int, int, KeyValue | None]] = []
            for v in raw_versions:
                main, sub = v[0], v[1]
                kv = None if len(v) == 2 else KeyValue(key, v[2], main, v[3], bytes(v[4]), v[5])
                versions.append((main, sub, kv))
            keys.append((key, versions))
    except CorruptRecord:
        raise
    except Exception as e:  # msgpack raises many types on garbage; all mean the same here
        raise CorruptRecord(f"malformed mvcc snapshot: {type(e).__name__}: {e}") from None
    return SnapshotContents(int(revision), int(compact_revision), keys)


_HASH_HEAD = struct.Struct(">qqI")  # main, sub, len(key)
_HASH_KV = struct.Struct(">qqqI")  # create_revision, version, lease, len(value)

_SORT_KEYS: dict[SortTarget, Any] = {
    SortTarget.KEY: lambda kv: kv.key,
    SortTarget.VERSION: lambda kv: kv.version,
    SortTarget.CREATE: lambda kv: kv.create_revision,
    SortTarget.MOD: lambda kv: kv.mod_revision,
    SortTarget.VALUE: lambda kv: kv.value,
}


def _compare_kv(c: Compare, kv: KeyValue) -> bool:
    t = c.target
    a: int | bytes
    b: int | bytes
    if t == CompareTarget.VALUE:
        a, b = kv.value, c.value
    elif t == CompareTarget.VERSION:
        a, b = kv.version, c.version
    elif t == CompareTarget.CREATE:
        a, b = kv.create_revision, c.create_revision
    elif t == CompareTarget.MOD:
        a, b = kv.mod_revision, c.mod_revision
    else:
        a, b = kv.lease, c.lease
    r = c.result
    if r == CompareResult.EQUAL:
        return a == b
    if r == CompareResult.NOT_EQUAL:
        return a != b
    if r == CompareResult.GREATER:
        return a > b  # type: ignore[operator]
    return a < b  # type: ignore[operator]

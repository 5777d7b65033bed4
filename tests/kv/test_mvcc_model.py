"""MVCC + watch + lease against a plain reference model (hypothesis stateful).

The model is deliberately naive: every key keeps *all* its versions forever in
a list, compaction only moves a number, reads scan everything. The store must
answer every request exactly as the model predicts (responses, revisions,
errors), and every watcher must receive exactly the events the model's log
says it should, in whole revisions, compaction included.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from kv.api import (
    Compare,
    CompareResult,
    CompareTarget,
    CompactionRequest,
    DeleteRangeRequest,
    EventType,
    KeyValue,
    LeaseGrantRequest,
    PutRequest,
    RangeRequest,
    RequestOp,
    ResponseHeader,
    TxnRequest,
    WatchCreateRequest,
    WatchFilterType,
    WatchResponse,
)
from kv.errors import ErrCompacted, ErrFutureRev, ErrLeaseNotFound
from kv.lease import Lessor
from kv.mvcc import MVCCStore
from kv.watch import WatchHub

KEYS = [b"a", b"b", b"c", b"d", b"e"]
RANGE_ENDS = [b"", b"\x00", b"b", b"c", b"e", b"z"]
keys = st.sampled_from(KEYS)
range_ends = st.sampled_from(RANGE_ENDS)
values = st.sampled_from([b"", b"1", b"2", b"xyz"])


def in_range(k: bytes, key: bytes, end: bytes) -> bool:
    if end == b"":
        return k == key
    if end == b"\x00":
        return k >= key
    return key <= k < end


@dataclass
class ModelEvent:
    rev: int
    type: EventType
    key: bytes
    kv: KeyValue | None  # None for a delete
    prev: KeyValue | None


@dataclass
class Model:
    """key -> list of (revision, KeyValue | None); None is a delete."""

    versions: dict[bytes, list[tuple[int, KeyValue | None]]] = field(default_factory=dict)
    rev: int = 1
    compacted: int = 0
    log: list[ModelEvent] = field(default_factory=list)
    leases: set[int] = field(default_factory=set)

    def at(self, key: bytes, rev: int) -> KeyValue | None:
        found = None
        for r, kv in self.versions.get(key, []):
            if r <= rev:
                found = kv
        return found

    def live(self, key: bytes, end: bytes, rev: int) -> list[KeyValue]:
        out = []
        for k in sorted(self.versions):
            if in_range(k, key, end):
                kv = self.at(k, rev)
                if kv is not None:
                    out.append(kv)
        return out

    def write(self, changes: list[tuple[bytes, bytes | None, int]]) -> None:
        """Apply (key, value or None=delete, lease) changes as one revision, if any change."""
        rev = self.rev + 1
        made = False
        for key, value, lease in changes:
            prev = self.at(key, rev)
            if value is None:
                if prev is None:
                    continue
                self.versions[key].append((rev, None))
                self.log.append(ModelEvent(rev, EventType.DELETE, key, None, prev))
            else:
                create = prev.create_revision if prev else rev
                version = prev.version + 1 if prev else 1
                kv = KeyValue(key, create, rev, version, value, lease)
                self.versions.setdefault(key, []).append((rev, kv))
                self.log.append(ModelEvent(rev, EventType.PUT, key, kv, prev))
            made = True
        if made:
            self.rev = rev


@dataclass
class ModelWatcher:
    stream: str
    watch_id: int
    key: bytes
    end: bytes
    start: int
    prev_kv: bool
    no_put: bool
    no_delete: bool
    compacted_at_create: int
    received: list[WatchResponse] = field(default_factory=list)
    canceled_with: int | None = None


def compare_holds(model: Model, c: Compare) -> bool:
    kvs = model.live(c.key, c.range_end, model.rev)
    if not kvs:
        if c.target == CompareTarget.VALUE:
            return False
        kvs = [KeyValue(c.key)]
    for kv in kvs:
        a, b = {
            CompareTarget.VERSION: (kv.version, c.version),
            CompareTarget.CREATE: (kv.create_revision, c.create_revision),
            CompareTarget.MOD: (kv.mod_revision, c.mod_revision),
            CompareTarget.VALUE: (kv.value, c.value),
            CompareTarget.LEASE: (kv.lease, c.lease),
        }[c.target]
        ok = {
            CompareResult.EQUAL: a == b,
            CompareResult.NOT_EQUAL: a != b,
            CompareResult.GREATER: a > b,  # type: ignore[operator]
            CompareResult.LESS: a < b,  # type: ignore[operator]
        }[c.result]
        if not ok:
            return False
    return True


class MVCCMachine(RuleBasedStateMachine):
    leases = Bundle("leases")

    @initialize()
    def setup(self) -> None:
        self.lessor = Lessor(min_ttl=5)
        self.store = MVCCStore(leases=self.lessor)
        # A twin fed the same writes: its hash must always equal the store's.
        self.twin_lessor = Lessor(min_ttl=5)
        self.twin = MVCCStore(leases=self.twin_lessor)
        self.hub = WatchHub()
        self.model = Model()
        self.watchers: dict[tuple[str, int], ModelWatcher] = {}
        self.next_lease = 100

    # ------------------------------------------------------------ plumbing

    def header(self) -> ResponseHeader:
        return ResponseHeader(cluster_id=1, member_id=2, revision=self.store.revision, raft_term=3)

    def deliver(self, stream: str, resp: WatchResponse) -> None:
        w = self.watchers.get((stream, resp.watch_id))
        assert w is not None, f"response for an unknown watcher: {resp}"
        assert w.canceled_with is None, "a canceled watcher got another response"
        if resp.canceled:
            w.canceled_with = resp.compact_revision
        w.received.append(resp)

    def write(self, req: object) -> object:
        resp, events = self.store.apply(req)
        resp2, events2 = self.twin.apply(req)
        assert resp == resp2 and events == events2
        for stream, wresp in self.hub.notify(events, self.store, self.header()):
            self.deliver(stream, wresp)
        return resp

    # --------------------------------------------------------------- rules

    @rule(key=keys, value=values, prev_kv=st.booleans())
    def put(self, key: bytes, value: bytes, prev_kv: bool) -> None:
        prev = self.model.at(key, self.model.rev)
        resp = self.write(PutRequest(key=key, value=value, prev_kv=prev_kv))
        self.model.write([(key, value, 0)])
        assert resp.header.revision == self.model.rev
        assert resp.prev_kv == (prev if prev_kv else None)

    @rule(lease=leases, key=keys, value=values)
    def put_with_lease(self, lease: int, key: bytes, value: bytes) -> None:
        req = PutRequest(key=key, value=value, lease=lease)
        if lease not in self.model.leases:
            rev = self.store.revision
            for s in (self.store, self.twin):
                try:
                    s.put(req)
                    raise AssertionError("put with a revoked lease succeeded")
                except ErrLeaseNotFound:
                    pass
            assert self.store.revision == rev
            return
        self.write(req)
        self.model.write([(key, value, lease)])

    @rule(key=keys, end=range_ends, prev_kv=st.booleans())
    def delete_range(self, key: bytes, end: bytes, prev_kv: bool) -> None:
        doomed = self.model.live(key, end, self.model.rev)
        resp = self.write(DeleteRangeRequest(key=key, range_end=end, prev_kv=prev_kv))
        self.model.write([(kv.key, None, 0) for kv in doomed])
        assert resp.deleted == len(doomed)
        assert list(resp.prev_kvs) == (doomed if prev_kv else [])
        assert resp.header.revision == self.model.rev

    @rule(
        ckey=keys,
        ctarget=st.sampled_from(list(CompareTarget)),
        result=st.sampled_from(list(CompareResult)),
        number=st.integers(0, 6),
        value=values,
        then_ops=st.lists(st.tuples(st.sampled_from(["put", "del", "get"]), values), max_size=3),
        else_ops=st.lists(st.tuples(st.sampled_from(["put", "del", "get"]), values), max_size=3),
        then_keys=st.permutations(KEYS),
        else_keys=st.permutations(KEYS),
    )
    def txn(self, ckey, ctarget, result, number, value, then_ops, else_ops, then_keys, else_keys) -> None:  # type: ignore[no-untyped-def]
        c = Compare(
            result=result, target=ctarget, key=ckey, version=number, create_revision=number,
            mod_revision=number, value=value, lease=number,
        )

        def ops(spec: list[tuple[str, bytes]], ks: list[bytes]) -> tuple[RequestOp, ...]:
            out = []
            for (kind, v), k in zip(spec, ks):  # distinct keys: no duplicate-key error
                if kind == "put":
                    out.append(RequestOp(request_put=PutRequest(key=k, value=v)))
                elif kind == "del":
                    out.append(RequestOp(request_delete_range=DeleteRangeRequest(key=k)))
                else:
                    out.append(RequestOp(request_range=RangeRequest(key=k)))
            return tuple(out)

        then_ = ops(then_ops, list(then_keys))
        else_ = ops(else_ops, list(else_keys))
        expect = compare_holds(self.model, c)
        resp = self.write(TxnRequest(compare=(c,), success=then_, failure=else_))
        assert resp.succeeded == expect
        chosen = then_ if expect else else_
        changes: list[tuple[bytes, bytes | None, int]] = []
        # Reads inside the txn see the txn's earlier writes.
        for op, r in zip(chosen, resp.responses):
            if op.request_range is not None:
                k = op.request_range.key
                pending = [c for c in changes if c[0] == k]
                if pending:
                    val = pending[-1][1]
                    got = r.response_range.kvs
                    assert (got[0].value if got else None) == val
                else:
                    kv = self.model.at(k, self.model.rev)
                    assert r.response_range.kvs == ((kv,) if kv else ())
            elif op.request_put is not None:
                changes.append((op.request_put.key, op.request_put.value, 0))
            else:
                changes.append((op.request_delete_range.key, None, 0))
        self.model.write(changes)
        assert resp.header.revision == self.model.rev

    @rule(data=st.data())
    def compact(self, data: st.DataObject) -> None:
        # Often exactly the current revision: compaction boundaries are where bugs hide.
        rev = data.draw(st.just(self.model.rev) | st.integers(0, self.model.rev + 1))
        if rev <= self.model.compacted or rev > self.model.rev:
            expected = ErrCompacted if rev <= self.model.compacted else ErrFutureRev
            for s in (self.store, self.twin):
                try:
                    s.compact(CompactionRequest(revision=rev))
                    raise AssertionError("compaction should have failed")
                except expected:
                    pass
            return
        self.store.compact(CompactionRequest(revision=rev))
        self.twin.compact(CompactionRequest(revision=rev))
        self.model.compacted = rev

    @rule(key=keys, end=range_ends, data=st.data(), limit=st.integers(0, 3))
    def range_at_past_revision(self, key: bytes, end: bytes, data: st.DataObject, limit: int) -> None:
        rev = data.draw(st.just(self.model.compacted) | st.integers(0, self.model.rev + 1))
        req = RangeRequest(key=key, range_end=end, revision=rev, limit=limit)
        if rev > self.model.rev:
            try:
                self.store.range(req)
                raise AssertionError("future revision read succeeded")
            except ErrFutureRev:
                return
        if 0 < rev < self.model.compacted:
            try:
                self.store.range(req)
                raise AssertionError("compacted revision read succeeded")
            except ErrCompacted:
                return
        expect = self.model.live(key, end, rev if rev > 0 else self.model.rev)
        resp = self.store.range(req)
        assert resp.count == len(expect)
        assert list(resp.kvs) == (expect[:limit] if limit else expect)
        assert resp.more == (limit > 0 and len(expect) > limit)
        assert resp.header.revision == self.model.rev

    @rule(
        key=keys, end=range_ends, data=st.data(), prev_kv=st.booleans(),
        filt=st.sampled_from([(), (WatchFilterType.NOPUT,), (WatchFilterType.NODELETE,)]),
        stream=st.sampled_from(["s1", "s2"]),
    )
    def watch_create_from_revision(self, key, end, data, prev_kv, filt, stream) -> None:  # type: ignore[no-untyped-def]
        if end and end != b"\x00" and key >= end:
            return  # an empty watch range is refused; test_watch covers it
        # Often exactly the compact revision (the oldest start that is still allowed).
        start = data.draw(st.just(self.model.compacted) | st.integers(0, self.model.rev + 1))
        resps = self.hub.handle(
            stream,
            WatchCreateRequest(key=key, range_end=end, start_revision=start, prev_kv=prev_kv, filters=filt),
            self.store, self.header(), 0.0,
        )
        created = resps[0]
        assert created.created and not created.canceled
        w = ModelWatcher(
            stream=stream, watch_id=created.watch_id, key=key, end=end,
            start=start if start > 0 else self.model.rev + 1, prev_kv=prev_kv,
            no_put=WatchFilterType.NOPUT in filt, no_delete=WatchFilterType.NODELETE in filt,
            compacted_at_create=self.model.compacted,
        )
        assert (stream, w.watch_id) not in self.watchers
        self.watchers[(stream, w.watch_id)] = w
        for r in resps[1:]:
            self.deliver(stream, r)
        if w.start < self.model.compacted:
            assert w.canceled_with == self.model.compacted
        else:
            assert w.canceled_with is None

    @rule(target=leases)
    def grant(self) -> int:
        self.next_lease += 1
        for lessor in (self.lessor, self.twin_lessor):
            resp = lessor.grant(LeaseGrantRequest(TTL=1, ID=self.next_lease), now=0.0)
            assert resp.ID == self.next_lease and resp.TTL == 5
        self.model.leases.add(self.next_lease)
        return self.next_lease

    @precondition(lambda self: bool(self.model.leases))
    @rule(lease=leases)
    def revoke(self, lease: int) -> None:
        if lease not in self.model.leases:
            return
        attached = sorted(
            k for k in self.model.versions
            if (kv := self.model.at(k, self.model.rev)) is not None and kv.lease == lease
        )
        keys_ = self.lessor.revoke(lease)
        assert list(keys_) == attached
        assert list(self.twin_lessor.revoke(lease)) == attached
        rev, events = self.store.delete_keys(keys_)
        rev2, events2 = self.twin.delete_keys(keys_)
        assert (rev, events) == (rev2, events2)
        for stream, wresp in self.hub.notify(events, self.store, self.header()):
            self.deliver(stream, wresp)
        self.model.leases.discard(lease)
        self.model.write([(k, None, 0) for k in attached])
        assert rev == self.model.rev

    @rule()
    def snapshot_restore_round_trip(self) -> None:
        data = self.store.snapshot()
        fresh = MVCCStore(leases=self.lessor)
        fresh.restore(data)
        assert fresh.snapshot() == data
        assert fresh.hash_kv() == self.store.hash_kv()
        self.store = fresh  # the restored store carries on; the twin must keep agreeing

    # ---------------------------------------------------------- invariants

    @invariant()
    def revisions_agree(self) -> None:
        if not hasattr(self, "store"):
            return
        assert self.store.revision == self.model.rev
        assert self.store.compact_revision == self.model.compacted

    @invariant()
    def current_state_agrees(self) -> None:
        if not hasattr(self, "store"):
            return
        resp = self.store.range(RangeRequest(key=b"\x00", range_end=b"\x00"))
        assert list(resp.kvs) == self.model.live(b"\x00", b"\x00", self.model.rev)

    @invariant()
    def twin_hashes_agree(self) -> None:
        if not hasattr(self, "store"):
            return
        assert self.store.hash_kv() == self.twin.hash_kv()
        assert self.store.snapshot() == self.twin.snapshot()

    @invariant()
    def lease_attachments_agree(self) -> None:
        if not hasattr(self, "store"):
            return
        for lease in self.model.leases:
            attached = {
                k for k in self.model.versions
                if (kv := self.model.at(k, self.model.rev)) is not None and kv.lease == lease
            }
            info = self.lessor.lookup(lease)
            assert info is not None and info.keys == attached

    @invariant()
    def watchers_got_exactly_the_model_events(self) -> None:
        if not hasattr(self, "store"):
            return
        for w in self.watchers.values():
            if w.canceled_with is not None:
                assert w.start < w.compacted_at_create
                continue
            expected = []
            for e in self.model.log:
                if e.rev < w.start or not in_range(e.key, w.key, w.end):
                    continue
                if (e.type == EventType.PUT and w.no_put) or (e.type == EventType.DELETE and w.no_delete):
                    continue
                kv = e.kv if e.kv is not None else KeyValue(e.key, mod_revision=e.rev)
                # prev_kv as etcd reads it: at rev-1, absent if that was compacted away.
                prev = e.prev if (w.prev_kv and e.rev - 1 >= w.compacted_at_create) else None
                expected.append((e.type, kv, prev))
            got = []
            last_rev = 0
            for r in w.received:
                revs = [ev.kv.mod_revision for ev in r.events]
                assert revs == sorted(revs) and revs, "events in revision order, no empty responses"
                assert revs[0] > last_rev, "a revision split across responses, or repeated"
                last_rev = revs[-1]
                got.extend((ev.type, ev.kv, ev.prev_kv) for ev in r.events)
            assert got == expected


TestMVCCModel = MVCCMachine.TestCase
TestMVCCModel.settings = settings(
    max_examples=500,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

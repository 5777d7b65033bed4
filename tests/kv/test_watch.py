"""WatchHub: etcd's watch semantics (replay, filters, prev_kv, compaction, IDs, progress)."""

from __future__ import annotations

from kv.api import (
    CompactionRequest,
    DeleteRangeRequest,
    EventType,
    PutRequest,
    RequestOp,
    ResponseHeader,
    TxnRequest,
    WatchCancelRequest,
    WatchCreateRequest,
    WatchFilterType,
    WatchProgressRequest,
    WatchResponse,
)
from kv.mvcc import MVCCStore
from kv.watch import ERR_EMPTY_WATCHER_RANGE, ERR_WATCHER_DUPLICATE_ID, INVALID_WATCH_ID, WatchHub

HDR = ResponseHeader(cluster_id=1, member_id=2, raft_term=3)


class World:
    """A store and a hub wired as the Member wires them."""

    def __init__(self, **hub_kw: float) -> None:
        self.store = MVCCStore()
        self.hub = WatchHub(**hub_kw)  # type: ignore[arg-type]
        self.out: list[tuple[object, WatchResponse]] = []

    def watch(self, stream: object = "s", now: float = 0.0, **kw: object) -> list[WatchResponse]:
        return self.hub.handle(stream, WatchCreateRequest(**kw), self.store, HDR, now)  # type: ignore[arg-type]

    def write(self, req: object) -> None:
        _, events = self.store.apply(req)
        self.out.extend(self.hub.notify(events, self.store, HDR))

    def put(self, key: bytes, value: bytes = b"v") -> None:
        self.write(PutRequest(key=key, value=value))

    def delete(self, key: bytes) -> None:
        self.write(DeleteRangeRequest(key=key))

    def drain(self) -> list[tuple[object, WatchResponse]]:
        out, self.out = self.out, []
        return out


def revs(resp: WatchResponse) -> list[int]:
    return [e.kv.mod_revision for e in resp.events]


def test_watch_from_zero_gets_only_future_events() -> None:
    w = World()
    w.put(b"a")
    (created,) = w.watch(key=b"a")
    assert created.created and created.watch_id == 0 and created.header.revision == 2
    assert created.header.cluster_id == 1
    w.put(b"a", b"2")
    [(stream, resp)] = w.drain()
    assert stream == "s" and revs(resp) == [3] and resp.header.revision == 3


def test_watch_from_a_past_revision_replays_history_then_follows() -> None:
    w = World()
    w.put(b"a", b"1")  # 2
    w.put(b"b", b"1")  # 3
    w.delete(b"a")  # 4
    created, replay = w.watch(key=b"a", range_end=b"c", start_revision=3)
    assert created.created and [e.type for e in replay.events] == [EventType.PUT, EventType.DELETE]
    assert revs(replay) == [3, 4]
    w.put(b"a", b"again")
    [(_, resp)] = w.drain()
    assert revs(resp) == [5]


def test_one_revisions_events_arrive_together_in_sub_revision_order() -> None:
    w = World()
    w.watch(key=b"\x00", range_end=b"\x00")
    w.write(TxnRequest(success=(RequestOp(request_put=PutRequest(key=b"z")),
                                RequestOp(request_put=PutRequest(key=b"a")))))
    [(_, resp)] = w.drain()
    assert [e.kv.key for e in resp.events] == [b"z", b"a"] and revs(resp) == [2, 2]


def test_catch_up_is_batched_by_whole_revisions() -> None:
    w = World(max_revisions_per_response=2)
    for i in range(5):
        w.write(TxnRequest(success=(RequestOp(request_put=PutRequest(key=b"a%d" % i)),
                                    RequestOp(request_put=PutRequest(key=b"b%d" % i)))))
    created, *batches = w.watch(key=b"a", range_end=b"c", start_revision=1)
    assert [revs(b) for b in batches] == [[2, 2, 3, 3], [4, 4, 5, 5], [6, 6]]


def test_filters_drop_puts_or_deletes_and_send_nothing_when_all_are_dropped() -> None:
    w = World()
    w.watch(stream="noput", key=b"k", filters=(WatchFilterType.NOPUT,))
    w.watch(stream="nodel", key=b"k", filters=(WatchFilterType.NODELETE,))
    w.put(b"k")
    w.delete(b"k")
    got = [(s, [e.type for e in r.events]) for s, r in w.drain()]
    assert got == [("nodel", [EventType.PUT]), ("noput", [EventType.DELETE])]


def test_prev_kv_only_when_asked() -> None:
    w = World()
    w.put(b"k", b"old")
    w.watch(stream="with", key=b"k", prev_kv=True)
    w.watch(stream="without", key=b"k")
    w.put(b"k", b"new")
    (_, a), (_, b) = w.drain()
    assert a.events[0].prev_kv is not None and a.events[0].prev_kv.value == b"old"
    assert b.events[0].prev_kv is None


def test_compacted_start_revision_cancels_the_watch_with_compact_revision() -> None:
    w = World()
    for i in range(4):
        w.put(b"k", b"%d" % i)  # 2..5
    w.store.compact(CompactionRequest(revision=4))
    created, canceled = w.watch(key=b"k", start_revision=3)
    assert created.created
    assert canceled.canceled and canceled.compact_revision == 4 and canceled.watch_id == created.watch_id
    assert w.hub.watcher("s", created.watch_id) is None
    w.put(b"k")
    assert w.drain() == []


def test_watch_from_the_compact_revision_still_gets_a_delete_made_at_it() -> None:
    # Shrunk from the model test: put a, delete a (rev 3), compact 3, watch from 3.
    w = World()
    w.put(b"a", b"")
    w.delete(b"a")
    w.store.compact(CompactionRequest(revision=3))
    created, replay = w.watch(key=b"a", range_end=b"\x00", start_revision=3, prev_kv=True)
    assert [(e.type, e.kv.mod_revision) for e in replay.events] == [(EventType.DELETE, 3)]
    # prev_kv is read at revision 2, which is compacted: left out, as etcd does.
    assert replay.events[0].prev_kv is None


def test_watch_ids_count_from_zero_per_stream_and_client_ids_are_kept() -> None:
    w = World()
    assert w.watch(stream="s1", key=b"a")[0].watch_id == 0
    assert w.watch(stream="s1", key=b"a", watch_id=1)[0].watch_id == 1
    assert w.watch(stream="s1", key=b"a")[0].watch_id == 2  # skips the client's 1
    assert w.watch(stream="s2", key=b"a")[0].watch_id == 0


def test_duplicate_client_watch_id_is_refused_as_etcd_does() -> None:
    w = World()
    w.watch(key=b"a", watch_id=7)
    (resp,) = w.watch(key=b"b", watch_id=7)
    assert (resp.watch_id, resp.created, resp.canceled) == (INVALID_WATCH_ID, True, True)
    assert resp.cancel_reason == ERR_WATCHER_DUPLICATE_ID


def test_empty_watch_range_is_refused() -> None:
    (resp,) = World().watch(key=b"b", range_end=b"a")
    assert resp.canceled and resp.cancel_reason == ERR_EMPTY_WATCHER_RANGE


def test_cancel_stops_events_and_unknown_ids_get_no_answer() -> None:
    w = World()
    w.watch(key=b"k")
    (resp,) = w.hub.handle("s", WatchCancelRequest(watch_id=0), w.store, HDR, 0.0)
    assert resp.canceled and resp.watch_id == 0 and resp.cancel_reason == ""
    assert w.hub.handle("s", WatchCancelRequest(watch_id=0), w.store, HDR, 0.0) == []
    w.put(b"k")
    assert w.drain() == []


def test_progress_request_reports_the_current_revision_without_events() -> None:
    w = World()
    w.watch(key=b"k")
    w.put(b"other")
    (resp,) = w.hub.handle("s", WatchProgressRequest(), w.store, HDR, 0.0)
    assert (resp.watch_id, resp.header.revision, resp.events) == (INVALID_WATCH_ID, 2, ())


def test_progress_notify_fires_only_for_idle_watchers_after_the_interval() -> None:
    w = World(progress_interval=10.0)
    w.watch(stream="busy", key=b"k", progress_notify=True, now=0.0)
    w.watch(stream="idle", key=b"j", progress_notify=True, now=0.0)
    w.watch(stream="plain", key=b"j", now=0.0)
    assert w.hub.next_progress_deadline() == 10.0
    assert w.hub.progress_due(9.9, HDR) == []
    w.put(b"k")
    w.drain()
    due = w.hub.progress_due(10.0, ResponseHeader(revision=2))
    assert [(s, r.watch_id, r.events, r.header.revision) for s, r in due] == [("idle", 0, (), 2)]
    assert w.hub.next_progress_deadline() == 20.0
    assert [s for s, _ in w.hub.progress_due(20.0, HDR)] == ["busy", "idle"]


def test_resync_replays_what_a_snapshot_install_skipped() -> None:
    leader = MVCCStore()
    w = World()
    w.watch(key=b"k", prev_kv=True)
    leader.put(PutRequest(key=b"k", value=b"1"))
    leader.put(PutRequest(key=b"k", value=b"2"))
    w.store.restore(leader.snapshot())
    [(_, resp)] = w.hub.resync(w.store, HDR)
    assert revs(resp) == [2, 3] and resp.events[1].prev_kv is not None


def test_notify_catches_up_a_lagging_watcher_before_new_events() -> None:
    w = World()
    w.watch(key=b"k")
    w.store.put(PutRequest(key=b"k", value=b"missed"))  # applied without notifying the hub
    w.put(b"k", b"new")
    [(_, resp)] = w.drain()
    assert revs(resp) == [2, 3]


def test_closed_stream_gets_nothing_more() -> None:
    w = World()
    w.watch(stream="s", key=b"k")
    w.hub.close_stream("s")
    w.put(b"k")
    assert w.drain() == [] and w.hub.watchers() == []

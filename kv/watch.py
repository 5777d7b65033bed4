"""Watches: streams of the store's events to clients (etcd mvcc/watchable_store + v3rpc/watch).

The hub is sans-IO. The Member feeds it

* ``handle(stream, request, store, header, now)``: a client's WatchCreate /
  WatchCancel / WatchProgress request on a watch stream (the stream is any
  hashable token the driver chooses); returns the responses for that stream;
* ``notify(events, store, header)``: the events of one applied write;
* ``resync(store, header)``: after the store jumped (a snapshot was installed);
* ``progress_due(now, header)``: periodic progress notifications;
* ``close_stream(stream)``: the client went away.

and every call returns ``WatchResponse``s addressed by stream token.

Delivery rules (etcd's)
    A watcher has a ``next_revision``: every event before it was delivered (or
    filtered out), none after it. Events of one revision always travel in one
    response, in sub-revision order; revisions arrive in order, none twice,
    none skipped. A watcher created at a past ``start_revision`` is *unsynced*;
    it is replayed from the store's history before the call returns (up to
    ``max_revisions_per_response`` revisions per response, etcd's
    watchBatchMaxRevs), so by the time a new write is notified every watcher is
    synced; ``notify`` still catches up any that lag, so nothing depends on
    call order. If the history a watcher needs was compacted (``next_revision
    < compact_revision``), it gets one response with ``compact_revision`` set
    and ``canceled``, and is removed (etcd closes the watch and the client
    must re-list).

Watch IDs are per stream: the client's non-zero ``watch_id``, or the lowest
free ID counting from 0. A duplicate client ID gets etcd's failed-create
response (watch_id -1, created and canceled, with the reason).

Deterministic: streams and watchers are kept in creation order (dicts keep
insertion order; nothing is ordered by hash).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass, replace

from kv.api import (
    Event,
    EventType,
    ResponseHeader,
    WatchCancelRequest,
    WatchCreateRequest,
    WatchFilterType,
    WatchProgressRequest,
    WatchResponse,
)
from kv.keyrange import in_range
from kv.mvcc import MVCCStore

Stream = Hashable

# etcd: a watch_id that names no single watcher (stream-wide progress, failed create).
INVALID_WATCH_ID = -1
# etcd's defaultProgressReportInterval.
DEFAULT_PROGRESS_INTERVAL = 600.0
# etcd's watchBatchMaxRevs: revisions per catch-up response.
DEFAULT_MAX_REVISIONS_PER_RESPONSE = 1000

# etcd's texts (mvcc/watcher.go).
ERR_WATCHER_DUPLICATE_ID = "mvcc: duplicate watch ID provided on the WatchStream"
ERR_EMPTY_WATCHER_RANGE = "mvcc: watcher range is empty"


@dataclass(slots=True)
class Watcher:
    stream: Stream
    watch_id: int
    key: bytes
    range_end: bytes  # RangeRequest conventions: b"" one key, b"\0" all keys >= key
    prev_kv: bool
    no_put: bool
    no_delete: bool
    progress_notify: bool
    next_revision: int  # the first revision not yet delivered
    seq: int  # hub-wide creation order: the order responses come out in
    progress_deadline: float | None = None
    sent_since_progress: bool = False

    def select(self, events: Iterable[Event]) -> tuple[Event, ...]:
        out: list[Event] = []
        for ev in events:
            if not in_range(ev.kv.key, self.key, self.range_end):
                continue
            if ev.type == EventType.PUT and self.no_put:
                continue
            if ev.type == EventType.DELETE and self.no_delete:
                continue
            if not self.prev_kv and ev.prev_kv is not None:
                ev = Event(ev.type, ev.kv, None)
            out.append(ev)
        return tuple(out)


@dataclass(slots=True)
class _Stream:
    watchers: dict[int, Watcher]
    next_id: int = 0


class WatchHub:
    def __init__(
        self,
        progress_interval: float = DEFAULT_PROGRESS_INTERVAL,
        max_revisions_per_response: int = DEFAULT_MAX_REVISIONS_PER_RESPONSE,
    ) -> None:
        if progress_interval <= 0:
            raise ValueError("progress_interval must be greater than 0")
        if max_revisions_per_response < 1:
            raise ValueError("max_revisions_per_response must be at least 1")
        self.progress_interval = progress_interval
        self.max_revisions_per_response = max_revisions_per_response
        self._streams: dict[Stream, _Stream] = {}
        self._seq = 0

    # ------------------------------------------------------------- queries

    @property
    def idle(self) -> bool:
        """No watcher anywhere: the member can skip the hub (a fast path; most members
        in a simulation have no watchers)."""
        return not self._streams or not any(s.watchers for s in self._streams.values())

    def watchers(self) -> list[Watcher]:
        """Every watcher, in creation order."""
        out = [w for s in self._streams.values() for w in s.watchers.values()]
        out.sort(key=lambda w: w.seq)
        return out

    def watcher(self, stream: Stream, watch_id: int) -> Watcher | None:
        s = self._streams.get(stream)
        return None if s is None else s.watchers.get(watch_id)

    # -------------------------------------------------------------- inputs

    def handle(
        self,
        stream: Stream,
        request: WatchCreateRequest | WatchCancelRequest | WatchProgressRequest,
        store: MVCCStore,
        header: ResponseHeader,
        now: float,
    ) -> list[WatchResponse]:
        header = _current(header, store)
        if isinstance(request, WatchCreateRequest):
            return self._create(stream, request, store, header, now)
        if isinstance(request, WatchCancelRequest):
            s = self._streams.get(stream)
            if s is None or request.watch_id not in s.watchers:
                return []  # etcd sends nothing for an unknown watch_id
            del s.watchers[request.watch_id]
            return [WatchResponse(header=header, watch_id=request.watch_id, canceled=True)]
        if isinstance(request, WatchProgressRequest):
            # Every watcher here is synced when a call returns, so the current revision
            # is a true progress mark: all events up to it were sent (etcd 3.5 answers a
            # progress request only when all the stream's watchers are synced).
            return [WatchResponse(header=header, watch_id=INVALID_WATCH_ID)]
        raise TypeError(f"not a watch request: {type(request).__name__}")

    def notify(
        self, events: list[Event], store: MVCCStore, header: ResponseHeader
    ) -> list[tuple[Stream, WatchResponse]]:
        """The events of one write, already applied to `store` (so at its current
        revision). Watchers that lag behind it are caught up from history first."""
        header = _current(header, store)
        out: list[tuple[Stream, WatchResponse]] = []
        if not events:
            return out
        rev = events[0].kv.mod_revision
        for w in self.watchers():
            if w.next_revision < rev:
                out.extend((w.stream, r) for r in self._catch_up(w, store, header))
            elif w.next_revision == rev:
                sel = w.select(events)
                w.next_revision = rev + 1
                if sel:
                    w.sent_since_progress = True
                    out.append((w.stream, WatchResponse(header=header, watch_id=w.watch_id, events=sel)))
        return out

    def resync(self, store: MVCCStore, header: ResponseHeader) -> list[tuple[Stream, WatchResponse]]:
        """Catch every lagging watcher up to the store (after a snapshot install)."""
        header = _current(header, store)
        out: list[tuple[Stream, WatchResponse]] = []
        for w in self.watchers():
            if w.next_revision <= store.revision:
                out.extend((w.stream, r) for r in self._catch_up(w, store, header))
        return out

    def progress_due(self, now: float, header: ResponseHeader) -> list[tuple[Stream, WatchResponse]]:
        """Progress notifications for `progress_notify` watchers whose interval ran out
        with no event sent in it (etcd's progress ticker)."""
        out: list[tuple[Stream, WatchResponse]] = []
        for w in self.watchers():
            if w.progress_deadline is None or w.progress_deadline > now:
                continue
            if not w.sent_since_progress:
                out.append((w.stream, WatchResponse(header=header, watch_id=w.watch_id)))
            w.sent_since_progress = False
            while w.progress_deadline <= now:
                w.progress_deadline += self.progress_interval
        return out

    def next_progress_deadline(self) -> float | None:
        deadlines = [w.progress_deadline for w in self.watchers() if w.progress_deadline is not None]
        return min(deadlines) if deadlines else None

    def close_stream(self, stream: Stream) -> None:
        self._streams.pop(stream, None)

    # ------------------------------------------------------------ internals

    def _create(
        self, stream: Stream, req: WatchCreateRequest, store: MVCCStore, header: ResponseHeader, now: float
    ) -> list[WatchResponse]:
        s = self._streams.get(stream)
        if s is None:
            s = self._streams[stream] = _Stream(watchers={})
        # etcd v3rpc: an empty key means b"\0", the smallest key.
        key = req.key or b"\x00"
        range_end = req.range_end
        if range_end and range_end != b"\x00" and key >= range_end:
            return [_failed(header, ERR_EMPTY_WATCHER_RANGE)]
        if req.watch_id != 0:
            if req.watch_id in s.watchers:
                return [_failed(header, ERR_WATCHER_DUPLICATE_ID)]
            watch_id = req.watch_id
        else:
            while s.next_id in s.watchers:
                s.next_id += 1
            watch_id = s.next_id
            s.next_id += 1
        self._seq += 1
        w = Watcher(
            stream=stream,
            watch_id=watch_id,
            key=key,
            range_end=range_end,
            prev_kv=req.prev_kv,
            no_put=WatchFilterType.NOPUT in req.filters,
            no_delete=WatchFilterType.NODELETE in req.filters,
            progress_notify=req.progress_notify,
            next_revision=req.start_revision if req.start_revision > 0 else store.revision + 1,
            seq=self._seq,
            progress_deadline=now + self.progress_interval if req.progress_notify else None,
        )
        s.watchers[watch_id] = w
        out = [WatchResponse(header=header, watch_id=watch_id, created=True)]
        if w.next_revision <= store.revision:
            out.extend(self._catch_up(w, store, header))
        return out

    def _catch_up(self, w: Watcher, store: MVCCStore, header: ResponseHeader) -> list[WatchResponse]:
        if w.next_revision < store.compact_revision:
            # etcd: minRev < compactRev; the watcher is told the compact revision and closed.
            self._streams[w.stream].watchers.pop(w.watch_id, None)
            return [
                WatchResponse(
                    header=header, watch_id=w.watch_id, canceled=True, compact_revision=store.compact_revision
                )
            ]
        events = store.events(w.key, w.range_end, w.next_revision, store.revision)
        w.next_revision = store.revision + 1
        out: list[WatchResponse] = []
        batch: list[Event] = []
        revisions = 0
        last = -1
        for ev in w.select(events):
            rev = ev.kv.mod_revision
            if rev != last:
                if revisions == self.max_revisions_per_response:
                    out.append(WatchResponse(header=header, watch_id=w.watch_id, events=tuple(batch)))
                    batch, revisions = [], 0
                revisions += 1
                last = rev
            batch.append(ev)
        if batch:
            out.append(WatchResponse(header=header, watch_id=w.watch_id, events=tuple(batch)))
        if out:
            w.sent_since_progress = True
        return out


def _current(header: ResponseHeader, store: MVCCStore) -> ResponseHeader:
    return header if header.revision == store.revision else replace(header, revision=store.revision)


def _failed(header: ResponseHeader, reason: str) -> WatchResponse:
    return WatchResponse(
        header=header, watch_id=INVALID_WATCH_ID, created=True, canceled=True, cancel_reason=reason
    )

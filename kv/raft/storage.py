"""The storage seam: what a RaftNode reads of its persisted log.

The driver owns writing (it persists each Ready); the node only *reads*
through this Protocol, as etcd-io/raft's ``Storage``. ``MemoryStorage`` is the
in-memory implementation used by tests and by the simulator's disk model.

Index conventions: the log holds entries ``first_index() .. last_index()``;
the entry at ``first_index() - 1`` is the snapshot's (or a dummy), whose term is
still known (needed for the AppendEntries consistency check).
"""

from __future__ import annotations

from typing import Protocol

from kv.errors import RaftKVError
from kv.raft.messages import EMPTY_HARD_STATE, ConfState, Entry, HardState, Snapshot, SnapshotMetadata


class ErrCompactedLog(RaftKVError):
    """The requested index is older than the first index: it was compacted away."""

    message = "requested index is unavailable due to compaction"


class ErrUnavailable(RaftKVError):
    """The requested index is beyond the last index."""

    message = "requested entry at index is unavailable"


class ErrSnapOutOfDate(RaftKVError):
    """A snapshot older than the storage's current one was offered."""

    message = "requested index is older than the existing snapshot"


class Storage(Protocol):
    def initial_state(self) -> tuple[HardState, ConfState]:
        """The persisted hard state and the membership of the latest snapshot."""

    def entries(self, lo: int, hi: int, max_size: int | None = None) -> list[Entry]:
        """Entries in [lo, hi). At least one entry if any, then up to max_size bytes of data.

        Raises ErrCompactedLog if lo < first_index(), ErrUnavailable if hi > last_index() + 1.
        """

    def term(self, index: int) -> int:
        """Term of the entry at index, for index in [first_index() - 1, last_index()].

        Raises ErrCompactedLog below that range and ErrUnavailable above it.
        """

    def first_index(self) -> int:
        """Index of the first entry possibly available (snapshot index + 1)."""

    def last_index(self) -> int:
        """Index of the last entry in storage (the snapshot index if the log is empty)."""

    def snapshot(self) -> Snapshot:
        """The most recent snapshot."""


class MemoryStorage:
    """Storage kept in memory: an offset log whose element 0 is the snapshot's dummy entry."""

    __slots__ = ("hard_state", "_snapshot", "_ents")

    def __init__(self) -> None:
        self.hard_state: HardState = EMPTY_HARD_STATE
        self._snapshot: Snapshot = Snapshot()
        self._ents: list[Entry] = [Entry(term=0, index=0)]

    # --- reads (the Storage protocol) ---

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self.hard_state, self._snapshot.metadata.conf_state

    def first_index(self) -> int:
        return self._ents[0].index + 1

    def last_index(self) -> int:
        return self._ents[0].index + len(self._ents) - 1

    def term(self, index: int) -> int:
        offset = self._ents[0].index
        if index < offset:
            raise ErrCompactedLog()
        if index - offset >= len(self._ents):
            raise ErrUnavailable()
        return self._ents[index - offset].term

    def entries(self, lo: int, hi: int, max_size: int | None = None) -> list[Entry]:
        offset = self._ents[0].index
        if lo <= offset:
            raise ErrCompactedLog()
        if hi > self.last_index() + 1:
            raise ErrUnavailable()
        ents = self._ents[lo - offset : hi - offset]
        return limit_size(ents, max_size)

    def snapshot(self) -> Snapshot:
        return self._snapshot

    # --- writes (the driver's side) ---

    def save(self, hard_state: HardState | None, entries: tuple[Entry, ...], snapshot: Snapshot | None) -> None:
        """Record what one Ready asks to persist, in the order the contract requires.

        Both drivers keep a MemoryStorage as the node's view of its log (etcd keeps
        one beside its WAL): this is the one place that view is updated.
        """
        if snapshot is not None:
            self.apply_snapshot(snapshot)
        if entries:
            self.append(entries)
        if hard_state is not None:
            self.set_hard_state(hard_state)

    def set_hard_state(self, hs: HardState) -> None:
        self.hard_state = hs

    def apply_snapshot(self, snap: Snapshot) -> None:
        """Replace the whole log by a snapshot (a follower installing one)."""
        if snap.metadata.index <= self._snapshot.metadata.index:
            raise ErrSnapOutOfDate()
        self._snapshot = snap
        self._ents = [Entry(term=snap.metadata.term, index=snap.metadata.index)]

    def create_snapshot(self, index: int, conf_state: ConfState, data: bytes) -> Snapshot:
        """Record a snapshot the application took at `index` (which must be in the log)."""
        if index <= self._snapshot.metadata.index:
            raise ErrSnapOutOfDate()
        if index > self.last_index():
            raise ErrUnavailable()
        meta = SnapshotMetadata(index=index, term=self.term(index), conf_state=conf_state)
        self._snapshot = Snapshot(metadata=meta, data=data)
        return self._snapshot

    def compact(self, compact_index: int) -> None:
        """Drop entries before compact_index; it becomes the new dummy entry."""
        offset = self._ents[0].index
        if compact_index <= offset:
            raise ErrCompactedLog()
        if compact_index > self.last_index():
            raise ErrUnavailable()
        i = compact_index - offset
        self._ents = [Entry(term=self._ents[i].term, index=self._ents[i].index)] + self._ents[i + 1 :]

    def append(self, entries: list[Entry] | tuple[Entry, ...]) -> None:
        """Append entries, truncating any conflicting suffix first."""
        if not entries:
            return
        first = self.first_index()
        if entries[-1].index < first:
            return  # wholly compacted already
        if entries[0].index < first:
            entries = entries[first - entries[0].index :]
        offset = entries[0].index - self._ents[0].index
        if offset > len(self._ents):
            raise ErrUnavailable(f"missing log entry [last: {self.last_index()}, append at: {entries[0].index}]")
        del self._ents[offset:]
        self._ents.extend(entries)


def entry_size(e: Entry) -> int:
    # A stand-in for the encoded size; only ratios matter for flow control.
    return len(e.data) + 16


def limit_size(ents: list[Entry], max_size: int | None) -> list[Entry]:
    """Keep the first entry always, then as many as fit in max_size bytes (etcd's limitSize)."""
    if max_size is None or not ents:
        return ents
    size = entry_size(ents[0])
    n = 1
    while n < len(ents):
        size += entry_size(ents[n])
        if size > max_size:
            break
        n += 1
    return ents[:n]

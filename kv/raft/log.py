"""RaftLog: the log as the node sees it — stable entries in Storage plus an unstable tail.

Entries the node has accepted but the driver has not yet persisted live in the
*unstable* part (etcd-io/raft's ``unstable``): they go out in the next Ready and
move to storage when the driver calls ``advance``. ``committed`` and
``applied`` are the Raft paper's commitIndex and lastApplied.
"""

from __future__ import annotations

from kv.errors import RaftKVError
from kv.raft.messages import Entry, Snapshot
from kv.raft.storage import ErrCompactedLog, ErrUnavailable, Storage, limit_size


class CommittedEntryConflict(RaftKVError):
    """A leader asked us to overwrite an entry we know is committed.

    This cannot happen in correct Raft (Leader Completeness, §5.4); etcd panics
    here. We raise a typed error instead so a simulator running a teaching bug
    can record the violation and carry on.
    """

    message = "raft: entry conflicts with a committed entry"


class RaftLog:
    __slots__ = (
        "storage",
        "unstable",
        "unstable_offset",
        "unstable_snapshot",
        "committed",
        "applied",
        "max_next_ents_size",
    )

    def __init__(self, storage: Storage, max_next_ents_size: int | None = None) -> None:
        self.storage = storage
        # Invariant: unstable[i].index == unstable_offset + i; unstable_offset == storage.last_index() + 1
        # unless an unstable snapshot is pending, in which case it is snapshot.index + 1.
        self.unstable: list[Entry] = []
        self.unstable_offset = storage.last_index() + 1
        self.unstable_snapshot: Snapshot | None = None
        first = storage.first_index()
        # Everything up to the snapshot is committed and applied by definition.
        self.committed = first - 1
        self.applied = first - 1
        self.max_next_ents_size = max_next_ents_size

    # --- indexes and terms ---

    def first_index(self) -> int:
        if self.unstable_snapshot is not None:
            return self.unstable_snapshot.metadata.index + 1
        return self.storage.first_index()

    def last_index(self) -> int:
        if self.unstable:
            return self.unstable_offset + len(self.unstable) - 1
        if self.unstable_snapshot is not None:
            return self.unstable_snapshot.metadata.index
        return self.storage.last_index()

    def term(self, index: int) -> int | None:
        """Term at index, or None if the index is compacted away or beyond the log."""
        dummy = self.first_index() - 1
        if index < dummy or index > self.last_index():
            return None
        if index >= self.unstable_offset and self.unstable:
            return self.unstable[index - self.unstable_offset].term
        if self.unstable_snapshot is not None and index == self.unstable_snapshot.metadata.index:
            return self.unstable_snapshot.metadata.term
        try:
            return self.storage.term(index)
        except (ErrCompactedLog, ErrUnavailable):
            return None

    def last_term(self) -> int:
        t = self.term(self.last_index())
        assert t is not None, "the last entry's term is always known"
        return t

    def match_term(self, index: int, term: int) -> bool:
        return self.term(index) == term

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Raft §5.4.1: is a candidate's log (last_index, last_term) at least as up-to-date as ours?"""
        ours = self.last_term()
        return last_term > ours or (last_term == ours and last_index >= self.last_index())

    # --- appending ---

    def append(self, entries: list[Entry] | tuple[Entry, ...]) -> int:
        """Append to the unstable tail, truncating any conflicting suffix; returns the last index."""
        if not entries:
            return self.last_index()
        after = entries[0].index - 1
        assert after >= self.committed, f"after({after}) is out of range [committed({self.committed})]"
        if after + 1 == self.unstable_offset + len(self.unstable):
            self.unstable.extend(entries)
        elif after + 1 <= self.unstable_offset:
            # Replacing from before the unstable tail: the new entries start a new tail.
            self.unstable_offset = after + 1
            self.unstable = list(entries)
        else:
            keep = after + 1 - self.unstable_offset
            del self.unstable[keep:]
            self.unstable.extend(entries)
        return self.last_index()

    def find_conflict(self, entries: tuple[Entry, ...]) -> int:
        """First index whose term differs from ours (0 if none, i.e. all already present)."""
        for e in entries:
            if not self.match_term(e.index, e.term):
                return e.index
        return 0

    def maybe_append(self, index: int, log_term: int, committed: int, entries: tuple[Entry, ...]) -> int | None:
        """Figure 2's AppendEntries receiver rules 2-5. Returns the new last index, or None on mismatch."""
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(entries)
        conflict = self.find_conflict(entries)
        if conflict:
            # Rule 3: delete the conflicting entry and all that follow; never below commit.
            if conflict <= self.committed:
                raise CommittedEntryConflict(
                    f"raft: entry {conflict} conflicts with committed entry [committed({self.committed})]"
                )
            self.append(entries[conflict - (index + 1) :])
        self.commit_to(min(committed, last_new))
        return last_new

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """Largest index <= `index` whose term <= `term`, and that term (fast backtracking hint)."""
        while index > 0:
            t = self.term(index)
            if t is None:
                return index, 0
            if t <= term:
                return index, t
            index -= 1
        return 0, 0

    # --- commit and apply ---

    def commit_to(self, index: int) -> None:
        if index > self.committed:
            assert index <= self.last_index(), f"commit {index} is out of range [last {self.last_index()}]"
            self.committed = index

    def maybe_commit(self, index: int, term: int) -> bool:
        """Advance commit to index if the entry there is of `term` (the caller picks the rule)."""
        if index > self.committed and self.term(index) == term:
            self.commit_to(index)
            return True
        return False

    def applied_to(self, index: int) -> None:
        if index:
            assert self.committed >= index >= self.applied, (
                f"applied({index}) is out of range [prev applied({self.applied}), committed({self.committed})]"
            )
            self.applied = index

    def has_next_committed(self) -> bool:
        return self.committed > max(self.applied, self.first_index() - 1)

    def next_committed(self) -> list[Entry]:
        lo = max(self.applied + 1, self.first_index())
        if self.committed + 1 > lo:
            return self.slice(lo, self.committed + 1, self.max_next_ents_size)
        return []

    # --- reading ranges ---

    def slice(self, lo: int, hi: int, max_size: int | None = None) -> list[Entry]:
        """Entries in [lo, hi), limited to max_size bytes (at least one). Raises if lo is compacted."""
        if lo >= hi:
            return []
        if lo < self.first_index():
            raise ErrCompactedLog()
        if hi > self.last_index() + 1:
            raise ErrUnavailable()
        ents: list[Entry] = []
        if lo < self.unstable_offset:
            ents = list(self.storage.entries(lo, min(hi, self.unstable_offset), max_size))
            if len(ents) < min(hi, self.unstable_offset) - lo:
                return ents  # already limited by size
        if hi > self.unstable_offset:
            s = max(lo, self.unstable_offset) - self.unstable_offset
            ents.extend(self.unstable[s : hi - self.unstable_offset])
        return limit_size(ents, max_size)

    def entries_from(self, index: int, max_size: int | None = None) -> list[Entry]:
        if index > self.last_index():
            return []
        return self.slice(index, self.last_index() + 1, max_size)

    def all_entries(self) -> list[Entry]:
        return self.entries_from(self.first_index())

    # --- snapshots ---

    def restore(self, snap: Snapshot) -> None:
        """Replace the whole log by a snapshot received from the leader."""
        self.committed = snap.metadata.index
        self.unstable_snapshot = snap
        self.unstable = []
        self.unstable_offset = snap.metadata.index + 1

    def snapshot(self) -> Snapshot:
        if self.unstable_snapshot is not None:
            return self.unstable_snapshot
        return self.storage.snapshot()

    # --- the driver persisted a Ready ---

    def stable_to(self, index: int, term: int) -> None:
        """Entries up to index (of term) are now in storage; drop them from the unstable tail."""
        t = self.term(index)
        if t == term and index >= self.unstable_offset:
            del self.unstable[: index + 1 - self.unstable_offset]
            self.unstable_offset = index + 1

    def stable_snap_to(self, index: int) -> None:
        if self.unstable_snapshot is not None and self.unstable_snapshot.metadata.index == index:
            self.unstable_snapshot = None

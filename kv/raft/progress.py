"""Progress: the leader's view of one follower, and every transition of it.

A follower is in one of three states (etcd-io/raft's tracker/progress.go, whose
scattered transitions we gather here):

* PROBE: we do not know its match; send one append per heartbeat and wait.
* REPLICATE: optimistic pipelining; ``next_index`` runs ahead of ``match_index``,
  bounded by the ``Inflights`` window (flow control).
* SNAPSHOT: it needs entries we compacted; a snapshot is in flight, send nothing.
"""

from __future__ import annotations

import enum
from collections import deque


class ProgressState(enum.Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


class Inflights:
    """A bounded window of in-flight append messages, by the last index each carried."""

    __slots__ = ("capacity", "_q")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._q: deque[int] = deque()

    def add(self, last_index: int) -> None:
        assert not self.full(), "cannot add into a full inflights window"
        self._q.append(last_index)

    def free_le(self, index: int) -> None:
        """Acknowledged up to index: free every message whose last entry is <= index."""
        q = self._q
        while q and q[0] <= index:
            q.popleft()

    def free_first_one(self) -> None:
        if self._q:
            self._q.popleft()

    def full(self) -> bool:
        return len(self._q) >= self.capacity

    def count(self) -> int:
        return len(self._q)

    def reset(self) -> None:
        self._q.clear()


class Progress:
    __slots__ = (
        "match_index",
        "next_index",
        "state",
        "pending_snapshot",
        "recent_active",
        "probe_sent",
        "inflights",
        "is_learner",
        "snapshot_sent_at",
    )

    def __init__(self, next_index: int, max_inflight: int, is_learner: bool = False) -> None:
        # Invariant: 0 <= match_index < next_index (match is known-replicated, next is what we send).
        self.match_index = 0
        self.next_index = next_index
        self.state = ProgressState.PROBE
        # In SNAPSHOT: the index of the snapshot being sent; else 0.
        self.pending_snapshot = 0
        # Heard from since the last CheckQuorum round (Raft dissertation §6.2).
        self.recent_active = False
        # In PROBE: an append was sent and we pause until a reply or the next heartbeat.
        self.probe_sent = False
        self.inflights = Inflights(max_inflight)
        self.is_learner = is_learner
        # Driver clock time the pending snapshot was sent (to retry one that was lost).
        self.snapshot_sent_at = 0.0

    def __repr__(self) -> str:
        return (
            f"Progress(state={self.state.value}, match={self.match_index}, next={self.next_index}, "
            f"inflight={self.inflights.count()}, learner={self.is_learner})"
        )

    # --- transitions: all reset through one helper ---

    def _reset_state(self, state: ProgressState) -> None:
        self.probe_sent = False
        self.pending_snapshot = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        # From SNAPSHOT, the follower now has at least the snapshot: resume after it.
        if self.state == ProgressState.SNAPSHOT:
            pending = self.pending_snapshot
            self._reset_state(ProgressState.PROBE)
            self.next_index = max(self.match_index + 1, pending + 1)
        else:
            self._reset_state(ProgressState.PROBE)
            self.next_index = self.match_index + 1

    def become_replicate(self) -> None:
        self._reset_state(ProgressState.REPLICATE)
        self.next_index = self.match_index + 1

    def become_snapshot(self, snapshot_index: int) -> None:
        self._reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot_index

    # --- updates from responses; a False return means "stale, ignored" ---

    def maybe_update(self, index: int) -> bool:
        """The follower acknowledged entries up to index. False if this tells us nothing new."""
        updated = False
        if self.match_index < index:
            self.match_index = index
            updated = True
            self.probe_sent = False
        self.next_index = max(self.next_index, index + 1)
        return updated

    def optimistic_update(self, last_sent: int) -> None:
        self.next_index = last_sent + 1

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """The follower rejected an append at `rejected`; back off toward its hint.

        False when the rejection is stale (it refers to an index we already moved past).
        """
        if self.state == ProgressState.REPLICATE:
            if rejected <= self.match_index:
                return False  # stale: we know it matches there
            self.next_index = self.match_index + 1
            return True
        # PROBE (or SNAPSHOT): only the rejection of what we last sent counts.
        if self.next_index - 1 != rejected:
            return False
        self.next_index = max(min(rejected, match_hint + 1), self.match_index + 1)
        self.probe_sent = False
        return True

    def is_paused(self) -> bool:
        """Should the leader hold back appends to this follower for now?"""
        if self.state == ProgressState.PROBE:
            return self.probe_sent
        if self.state == ProgressState.REPLICATE:
            return self.inflights.full()
        return True  # SNAPSHOT

    def sent_entries(self, last_index: int, count: int) -> None:
        """Bookkeeping after an append carrying `count` entries up to last_index was sent."""
        if self.state == ProgressState.REPLICATE:
            if count:
                self.optimistic_update(last_index)
                self.inflights.add(last_index)
        elif self.state == ProgressState.PROBE:
            self.probe_sent = True

    def check_invariants(self) -> None:
        assert 0 <= self.match_index < self.next_index, repr(self)
        if self.state != ProgressState.SNAPSHOT:
            assert self.pending_snapshot == 0, repr(self)
        if self.state != ProgressState.REPLICATE:
            assert self.inflights.count() == 0, repr(self)

"""Log replication from the leader (§5.3): appending, the commit rule (§5.4.2, Figure 8),
sending entries or a snapshot to each follower under flow control, and what a
follower's answer changes.

These functions are RaftNode's methods, written here to keep one part of the
protocol per module; kv/raft/node.py binds each as a method of the same name
with a leading underscore, so ``self`` is the node.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kv.bugs import TeachingBug
from kv.errors import ProposalDropped
from kv.raft.messages import Entry, Message, MessageType
from kv.raft.progress import Progress, ProgressState
from kv.raft.storage import ErrCompactedLog, ErrUnavailable, entry_size

if TYPE_CHECKING:
    from kv.raft.node import RaftNode


def append_entries(self: RaftNode, entries: list[Entry]) -> None:
    size = sum(entry_size(e) for e in entries)
    limit = self.config.max_uncommitted_entries_size
    if limit and self.uncommitted_size > 0 and self.uncommitted_size + size > limit:
        raise ProposalDropped("too many uncommitted entries")
    self.uncommitted_size += size
    last = self.log.last_index()
    stamped = [Entry(term=self.term, index=last + 1 + i, type=e.type, data=e.data) for i, e in enumerate(entries)]
    last = self.log.append(stamped)
    if self.config.has_bug(TeachingBug.ACK_BEFORE_PERSIST):
        # TEACHING BUG ack-before-persist: count our own copy toward the quorum before the
        # driver has made it durable; a crash can then lose an entry the cluster committed.
        pr = self.tracker.progress.get(self.id)
        if pr is not None:
            pr.maybe_update(last)
            self._maybe_commit()

def maybe_commit(self: RaftNode) -> bool:
    """Advance commit to what a quorum has; True if it moved."""
    mci = self.tracker.committed()
    if self.config.has_bug(TeachingBug.COMMIT_OLD_TERM):
        # TEACHING BUG commit-old-term: count replicas for entries of earlier terms too.
        # Raft §5.4.2 (Figure 8): such an entry can still be overwritten by a leader
        # that never saw it, so only entries of the current term may commit by counting.
        if mci > self.log.committed and mci <= self.log.last_index():
            self.log.commit_to(mci)
            moved = True
        else:
            moved = False
    else:
        moved = self.log.maybe_commit(mci, self.term)
    if moved:
        self._release_pending_read_index()
    return moved

def committed_entry_in_current_term(self: RaftNode) -> bool:
    return self.log.term(self.log.committed) == self.term

def handle_append_response(self: RaftNode, m: Message, pr: Progress) -> None:
    if m.reject:
        next_probe = m.reject_hint
        if m.log_term > 0:
            # Fast backtracking: jump past every entry of ours whose term is above
            # the follower's term at its hint; they cannot match.
            next_probe, _ = self.log.find_conflict_by_term(m.reject_hint, m.log_term)
        if pr.maybe_decr_to(m.index, next_probe):
            if pr.state == ProgressState.REPLICATE:
                pr.become_probe()
            self._send_append(m.from_)
        return
    old_paused = pr.is_paused()
    if not pr.maybe_update(m.index):
        return
    if pr.state == ProgressState.PROBE:
        pr.become_replicate()
    elif pr.state == ProgressState.SNAPSHOT and pr.match_index + 1 >= self.log.first_index():
        # The follower has caught up through the snapshot; resume normal replication.
        pr.become_probe()
        pr.become_replicate()
    elif pr.state == ProgressState.REPLICATE:
        pr.inflights.free_le(m.index)
    if self._maybe_commit():
        self._bcast_append()
    elif old_paused:
        self._send_append(m.from_)
    # Fill the window: send as long as there is something to send and room for it.
    while self._send_append(m.from_, send_if_empty=False):
        pass
    if m.from_ == self.lead_transferee and pr.match_index == self.log.last_index():
        self._send(Message(type=MessageType.TIMEOUT_NOW, to=m.from_))

def send_append(self: RaftNode, to: int, send_if_empty: bool = True) -> bool:
    pr = self.tracker.progress[to]
    if pr.is_paused():
        return False
    prev_index = pr.next_index - 1
    prev_term = self.log.term(prev_index)
    ents: list[Entry] = []
    compacted = prev_term is None
    if not compacted:
        try:
            ents = self.log.entries_from(pr.next_index, self.config.max_size_per_msg)
        except ErrCompactedLog:
            compacted = True
    if compacted:
        return self._send_snapshot(to, pr)
    if not ents and not send_if_empty:
        return False
    assert prev_term is not None
    self._send(
        Message(
            type=MessageType.APP,
            to=to,
            index=prev_index,
            log_term=prev_term,
            entries=tuple(ents),
            commit=self.log.committed,
        )
    )
    pr.sent_entries(ents[-1].index if ents else prev_index, len(ents))
    return True

def send_snapshot(self: RaftNode, to: int, pr: Progress) -> bool:
    if not pr.recent_active:
        return False  # do not ship a snapshot to a node that may be down
    try:
        snap = self.log.snapshot()
    except ErrUnavailable:
        return False
    if snap.is_empty:
        return False
    self._send(Message(type=MessageType.SNAP, to=to, snapshot=snap))
    pr.become_snapshot(snap.metadata.index)
    pr.snapshot_sent_at = self.now
    return True

def bcast_append(self: RaftNode) -> None:
    for node_id in self.tracker.peer_ids():
        if node_id != self.id:
            self._send_append(node_id)

def bcast_heartbeat(self: RaftNode, ctx: bytes) -> None:
    for node_id in self.tracker.peer_ids():
        if node_id == self.id:
            continue
        pr = self.tracker.progress[node_id]
        # Never tell a follower to commit past what it is known to hold.
        commit = min(pr.match_index, self.log.committed)
        self._send(Message(type=MessageType.HEARTBEAT, to=node_id, commit=commit, context=ctx))

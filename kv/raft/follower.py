"""The follower's side of Raft: accepting entries (Figure 2's AppendEntries receiver),
heartbeats and snapshots (§7), and forwarding what only a leader can do.

These functions are RaftNode's methods, written here to keep one part of the
protocol per module; kv/raft/node.py binds each as a method of the same name
with a leading underscore, so ``self`` is the node.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kv.errors import ProposalDropped
from kv.raft import confchange
from kv.raft.messages import NONE, Message, MessageType, ReadState, Snapshot

if TYPE_CHECKING:
    from kv.raft.node import RaftNode


def step_follower(self: RaftNode, m: Message) -> None:
    t = m.type
    if t == MessageType.PROP:
        if self.lead == NONE:
            self._drop(m, "no leader")
            return
        # Forward to the leader, as etcd does; the proposer learns the outcome by
        # seeing its entry applied (the Member tags entries with request ids).
        self._send(Message(type=MessageType.PROP, to=self.lead, entries=m.entries))
    elif t == MessageType.APP:
        self._reset_election_timer()
        self.lead = m.from_
        self._handle_append(m)
    elif t == MessageType.HEARTBEAT:
        self._reset_election_timer()
        self.lead = m.from_
        self._handle_heartbeat(m)
    elif t == MessageType.SNAP:
        self._reset_election_timer()
        self.lead = m.from_
        self._handle_snapshot(m)
    elif t == MessageType.TRANSFER_LEADER:
        if self.lead == NONE:
            self._drop(m, "no leader to transfer leadership from")
            return
        self._send(Message(type=MessageType.TRANSFER_LEADER, to=self.lead, from_=m.from_))
    elif t == MessageType.TIMEOUT_NOW:
        # The leader asked us to take over (dissertation §3.10): campaign at once,
        # skipping pre-vote and overriding the voters' leader lease.
        self._hup(transfer=True)
    elif t == MessageType.READ_INDEX:
        if self.lead == NONE:
            self._drop(m, "no leader")
            return
        self._send(Message(type=MessageType.READ_INDEX, to=self.lead, context=m.context))
    elif t == MessageType.READ_INDEX_RESP:
        self.read_states.append(ReadState(index=m.index, request_ctx=m.context))

def drop(m: Message, reason: str) -> None:
    """Refuse an input: loudly to a local caller, silently for a forwarded message."""
    if m.to == NONE:  # built by a public method of this node, not received from a peer
        raise ProposalDropped(reason)

def handle_append(self: RaftNode, m: Message) -> None:
    if m.index < self.log.committed:
        # Everything up to our commit index matches the leader's log (Log Matching).
        self._send(Message(type=MessageType.APP_RESP, to=m.from_, index=self.log.committed))
        return
    last_new = self.log.maybe_append(m.index, m.log_term, m.commit, m.entries)
    if last_new is not None:
        self._send(Message(type=MessageType.APP_RESP, to=m.from_, index=last_new))
        return
    # Reject with a hint for fast backtracking: the last index at or before the
    # probe whose term is <= the probe's term (skips a whole conflicting term at once).
    hint_index = min(m.index, self.log.last_index())
    hint_index, hint_term = self.log.find_conflict_by_term(hint_index, m.log_term)
    self._send(
        Message(
            type=MessageType.APP_RESP,
            to=m.from_,
            index=m.index,
            reject=True,
            reject_hint=hint_index,
            log_term=hint_term,
        )
    )

def handle_heartbeat(self: RaftNode, m: Message) -> None:
    # The leader sends min(our match, its commit), so this never passes our log.
    self.log.commit_to(min(m.commit, self.log.last_index()))
    self._send(Message(type=MessageType.HEARTBEAT_RESP, to=m.from_, context=m.context))

def handle_snapshot(self: RaftNode, m: Message) -> None:
    assert m.snapshot is not None
    if self._restore(m.snapshot):
        self._send(Message(type=MessageType.APP_RESP, to=m.from_, index=self.log.last_index()))
    else:
        self._send(Message(type=MessageType.APP_RESP, to=m.from_, index=self.log.committed))

def restore(self: RaftNode, snap: Snapshot) -> bool:
    meta = snap.metadata
    if meta.index <= self.log.committed:
        return False
    cs = meta.conf_state
    if self.id not in cs.voters + cs.learners + cs.voters_outgoing:
        # A snapshot of a configuration we are not part of: ignore it (etcd does too).
        return False
    if self.log.match_term(meta.index, meta.term):
        # We already have the snapshot's last entry: just move commit forward.
        self.log.commit_to(meta.index)
        return False
    self.log.restore(snap)
    self.tracker.config, self.tracker.progress = confchange.restore(
        cs, self.log.last_index(), self.config.max_inflight_msgs
    )
    return True

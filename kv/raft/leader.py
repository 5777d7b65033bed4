"""The leader's side of Raft: its timers (heartbeats, CheckQuorum), proposals, ReadIndex
(dissertation §6.4) and leadership transfer (dissertation §3.10). Log replication
itself is kv/raft/replication.py.

These functions are RaftNode's methods, written here to keep one part of the
protocol per module; kv/raft/node.py binds each as a method of the same name
with a leading underscore, so ``self`` is the node.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kv import codec  # module import: kv.codec imports kv.raft.messages, so bind late
from kv.errors import ProposalDropped
from kv.raft import confchange
from kv.raft.messages import NONE, ConfChange, EntryType, Message, MessageType, ReadState
from kv.raft.progress import ProgressState
from kv.raft.quorum import VoteResult, joint_vote_result

if TYPE_CHECKING:
    from kv.raft.node import RaftNode


def tick_leader(self: RaftNode) -> None:
    now = self.now
    if now >= self.check_quorum_deadline:
        self.check_quorum_deadline = now + self.config.election_timeout_min
        self.election_reset_at = now
        if self.config.check_quorum:
            # CheckQuorum (dissertation §6.2): a leader that has not heard from a
            # quorum within an election timeout steps down, so clients stop waiting on it.
            if not self.tracker.quorum_active(self.id):
                self.become_follower(self.term, NONE)
                return
            for node_id, pr in self.tracker.progress.items():
                if node_id != self.id:
                    pr.recent_active = False
    if self.lead_transferee != NONE and now >= self.transfer_deadline:
        self._abort_leader_transfer()
    if now >= self.heartbeat_deadline:
        self.heartbeat_deadline = now + self.config.heartbeat_interval
        self._bcast_heartbeat(self.read_only.last_pending_ctx() or b"")

def step_leader(self: RaftNode, m: Message) -> None:
    t = m.type
    if t in (MessageType.PROP, MessageType.TRANSFER_LEADER):
        try:
            if t == MessageType.PROP:
                self._leader_propose(m)
            else:
                self._leader_transfer(m.from_)
        except ProposalDropped as e:
            self._drop(m, str(e))
        return
    if t == MessageType.READ_INDEX:
        self._leader_read_index(m)
        return
    pr = self.tracker.progress.get(m.from_)
    if pr is None:
        return  # a message from a node no longer in the configuration
    if t == MessageType.APP_RESP:
        pr.recent_active = True
        self._handle_append_response(m, pr)
    elif t == MessageType.HEARTBEAT_RESP:
        pr.recent_active = True
        pr.probe_sent = False
        if pr.state == ProgressState.REPLICATE and pr.inflights.full():
            # Appends may have been lost; free one slot so replication cannot stall.
            pr.inflights.free_first_one()
        elif pr.state == ProgressState.SNAPSHOT and self.now - pr.snapshot_sent_at > self.config.election_timeout_max:
            # The snapshot (or its answer) was probably lost: probe again, which resends it if needed.
            pr.become_probe()
        if pr.match_index < self.log.last_index():
            self._send_append(m.from_)
        if m.context:
            self._handle_read_ack(m.from_, m.context)
    elif t == MessageType.SNAP_STATUS:
        if pr.state != ProgressState.SNAPSHOT:
            return
        if m.reject:
            pr.pending_snapshot = 0
        pr.become_probe()
        # Wait for the next heartbeat response before probing again.
        pr.probe_sent = True
    elif t == MessageType.UNREACHABLE:
        if pr.state == ProgressState.REPLICATE:
            pr.become_probe()

def leader_propose(self: RaftNode, m: Message) -> None:
    if not m.entries:
        raise ProposalDropped("empty proposal")
    if self.id not in self.tracker.progress:
        raise ProposalDropped("this node was removed from the configuration")
    if self.lead_transferee != NONE:
        raise ProposalDropped("leadership transfer in progress")
    entries = list(m.entries)
    for i, e in enumerate(entries):
        if e.type != EntryType.CONF_CHANGE:
            continue
        cc = codec.decode_conf_change(e.data)
        reason = self._conf_change_refusal(cc)
        if reason:
            raise ProposalDropped(reason)
        self.pending_conf_index = self.log.last_index() + i + 1
    self._append_entries(entries)
    self._bcast_append()

def conf_change_refusal(self: RaftNode, cc: ConfChange) -> str:
    if self.pending_conf_index > self.log.applied:
        return "possible unapplied conf change"
    joint = self.tracker.config.joint
    if joint and not cc.leave_joint():
        return "must transition out of joint config first"
    if not joint and cc.leave_joint():
        return "not in joint state; refusing empty conf change"
    try:
        self._changed_config(cc)  # dry run: refuse now what would be invalid on apply
    except confchange.ConfChangeError as e:
        return str(e)
    return ""


# --- ReadIndex (dissertation §6.4) ---

def leader_read_index(self: RaftNode, m: Message) -> None:
    if self.tracker.is_singleton():
        self._answer_read(m, self.log.committed)
        return
    if not self._committed_entry_in_current_term():
        # A new leader does not know the commit index until an entry of its own term
        # commits; hold the read until then.
        self.pending_read_index.append(m)
        return
    self.read_only.add_request(self.log.committed, m)
    self.read_only.recv_ack(self.id, m.context)
    self._bcast_heartbeat(m.context)

def release_pending_read_index(self: RaftNode) -> None:
    if self.pending_read_index and self._committed_entry_in_current_term():
        pending, self.pending_read_index = self.pending_read_index, []
        for m in pending:
            self._leader_read_index(m)

def handle_read_ack(self: RaftNode, from_: int, ctx: bytes) -> None:
    acks = self.read_only.recv_ack(from_, ctx)
    if acks is None:
        return
    cfg = self.tracker.config
    if joint_vote_result(cfg.voters, cfg.voters_outgoing, acks) != VoteResult.WON:
        return
    for rs in self.read_only.advance(ctx):
        self._answer_read(rs.request, rs.index)

def answer_read(self: RaftNode, m: Message, index: int) -> None:
    if m.from_ in (NONE, self.id):
        self.read_states.append(ReadState(index=index, request_ctx=m.context))
    else:
        self._send(Message(type=MessageType.READ_INDEX_RESP, to=m.from_, index=index, context=m.context))

# --- leadership transfer (dissertation §3.10) ---

def leader_transfer(self: RaftNode, transferee: int) -> None:
    pr = self.tracker.progress.get(transferee)
    if pr is None or pr.is_learner:
        raise ProposalDropped(f"cannot transfer leadership to {transferee}: not a voter")
    if self.lead_transferee != NONE:
        if self.lead_transferee == transferee:
            return  # already in progress
        self._abort_leader_transfer()
    if transferee == self.id:
        return  # already leader
    self.transfer_deadline = self.now + self.config.transfer_timeout
    self.lead_transferee = transferee
    if pr.match_index == self.log.last_index():
        self._send(Message(type=MessageType.TIMEOUT_NOW, to=transferee))
    else:
        self._send_append(transferee)

def abort_leader_transfer(self: RaftNode) -> None:
    self.lead_transferee = NONE

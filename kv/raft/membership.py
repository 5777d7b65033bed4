"""Membership changes as the node applies them (§6, dissertation §4): the new
configuration computed by kv/raft/confchange.py, what a leader does when the
configuration changes under it, and leaving a joint configuration.

These functions are RaftNode's methods, written here to keep one part of the
protocol per module; kv/raft/node.py binds each as a method of the same name,
so ``self`` is the node.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kv import codec  # module import: kv.codec imports kv.raft.messages, so bind late
from kv.errors import CorruptRecord, ProposalDropped
from kv.raft import confchange
from kv.raft.messages import NONE, ConfChange, Entry, EntryType, Message, MessageType, Role

if TYPE_CHECKING:
    from kv.raft.node import RaftNode


def changed_config(self: RaftNode, cc: ConfChange) -> confchange.Changed:
    tr = self.tracker
    if cc.leave_joint():
        return confchange.leave_joint(tr.config, tr.progress)
    joint, auto_leave = cc.enter_joint()
    if joint:
        return confchange.enter_joint(
            tr.config, tr.progress, self.log.last_index(), tr.max_inflight, auto_leave, cc.changes
        )
    return confchange.simple(tr.config, tr.progress, self.log.last_index(), tr.max_inflight, cc.changes)

def apply_conf_change_entry(self: RaftNode, e: Entry) -> None:
    try:
        cc = codec.decode_conf_change(e.data)
        cfg, prs = self._changed_config(cc)
    except (confchange.ConfChangeError, CorruptRecord) as err:
        # Deterministic on every member (same log, same config): skip it everywhere.
        self.rejected_conf_changes.append((e.index, str(err)))
        return
    self.tracker.config, self.tracker.progress = cfg, prs
    self._switched_config()

def switched_config(self: RaftNode) -> None:
    pr = self.tracker.progress.get(self.id)
    if self.role != Role.LEADER:
        return
    if pr is None or pr.is_learner:
        # Dissertation §4.2.2: a leader removed from the configuration steps down once the
        # change is committed. Hand over to the most caught-up voter so the gap is short.
        best = max(
            (i for i in self.tracker.voter_ids() if i in self.tracker.progress),
            key=lambda i: (self.tracker.progress[i].match_index, -i),
            default=NONE,
        )
        self.become_follower(self.term, NONE)
        if best != NONE:
            self._send(Message(type=MessageType.TIMEOUT_NOW, to=best))
        return
    if self.lead_transferee != NONE and not self.tracker.is_voter(self.lead_transferee):
        self._abort_leader_transfer()
    if self._maybe_commit():
        self._bcast_append()
    else:
        for node_id in self.tracker.peer_ids():
            if node_id != self.id:
                self._send_append(node_id, send_if_empty=False)

def maybe_auto_leave_joint(self: RaftNode) -> None:
    cfg = self.tracker.config
    if cfg.joint and cfg.auto_leave and self.pending_conf_index <= self.log.applied:
        # JOINT_IMPLICIT / AUTO: leave the joint configuration as soon as entering it applied.
        try:
            self.propose_conf_change_unchecked(ConfChange())
        except ProposalDropped:
            pass  # e.g. a transfer in progress: tried again after the next apply

def propose_conf_change_unchecked(self: RaftNode, cc: ConfChange) -> None:
    self._leader_propose(
        Message(
            type=MessageType.PROP,
            from_=self.id,
            entries=(Entry(term=0, index=0, type=EntryType.CONF_CHANGE, data=codec.encode_conf_change(cc)),),
        )
    )

"""Elections (Raft §5.2, PreVote: dissertation §9.6): how a node asks for votes, counts
them, and grants its own.

These functions are RaftNode's methods, written here to keep one part of the
protocol per module; kv/raft/node.py binds each as a method of the same name
with a leading underscore, so ``self`` is the node.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kv.bugs import TeachingBug
from kv.raft.messages import NONE, EntryType, Message, MessageType, Role
from kv.raft.quorum import VoteResult, joint_vote_result

if TYPE_CHECKING:
    from kv.raft.node import RaftNode

# Context of a campaign forced by TIMEOUT_NOW: voters grant it even inside a leader lease.
CAMPAIGN_TRANSFER = b"transfer"


def promotable(self: RaftNode) -> bool:
    pr = self.tracker.progress.get(self.id)
    return pr is not None and not pr.is_learner and self.log.unstable_snapshot is None

def has_unapplied_conf_change(self: RaftNode) -> bool:
    if self.log.applied >= self.log.committed:
        return False
    lo = max(self.log.applied + 1, self.log.first_index())
    return any(e.type == EntryType.CONF_CHANGE for e in self.log.slice(lo, self.log.committed + 1))

def hup(self: RaftNode, transfer: bool) -> None:
    if self.role == Role.LEADER:
        return
    if not self._promotable():
        return
    if self._has_unapplied_conf_change():
        # Our view of the membership may be stale until these apply; campaigning
        # under the old configuration could elect a leader without a real quorum.
        return
    if self.config.pre_vote and not transfer:
        self._campaign(MessageType.PRE_VOTE)
    else:
        self._campaign(MessageType.VOTE, transfer=transfer)

def campaign(self: RaftNode, kind: MessageType, transfer: bool = False) -> None:
    if kind == MessageType.PRE_VOTE:
        self.become_pre_candidate()
        term = self.term + 1  # the term we would campaign in; not adopted yet
    else:
        self.become_candidate()
        term = self.term
    self.tracker.record_vote(self.id, True)
    if self._poll_result() == VoteResult.WON:
        # A single-voter configuration wins at once.
        if kind == MessageType.PRE_VOTE:
            self._campaign(MessageType.VOTE)
        else:
            self.become_leader()
        return
    ctx = CAMPAIGN_TRANSFER if transfer else b""
    last_index, last_term = self.log.last_index(), self.log.last_term()
    for node_id in self.tracker.voter_ids():
        if node_id == self.id:
            continue
        self._send(
            Message(type=kind, to=node_id, term=term, index=last_index, log_term=last_term, context=ctx)
        )

def poll_result(self: RaftNode) -> VoteResult:
    cfg = self.tracker.config
    return joint_vote_result(cfg.voters, cfg.voters_outgoing, self.tracker.votes)

def handle_vote_request(self: RaftNode, m: Message) -> None:
    # Figure 2, RequestVote receiver: grant if we have not voted for someone else in
    # this term (or it is a pre-vote for a later term) and the candidate's log is at
    # least as up-to-date as ours (§5.4.1).
    can_vote = (
        self.vote == m.from_
        or (self.vote == NONE and self.lead == NONE)
        or (m.type == MessageType.PRE_VOTE and m.term > self.term)
    )
    up_to_date = self.log.is_up_to_date(m.index, m.log_term)
    if self.config.has_bug(TeachingBug.NO_LOG_CHECK):
        # TEACHING BUG no-log-check: grant votes without comparing logs, so a candidate
        # missing committed entries can win (breaks Leader Completeness, Raft §5.4.1).
        up_to_date = True
    resp = MessageType.VOTE_RESP if m.type == MessageType.VOTE else MessageType.PRE_VOTE_RESP
    if can_vote and up_to_date:
        # A granted vote is sent with the candidate's term: for a pre-vote that term
        # is not ours yet, and the candidate must not take the answer as stale.
        self._send(Message(type=resp, to=m.from_, term=m.term))
        if m.type == MessageType.VOTE:
            self._reset_election_timer()
            self.vote = m.from_
    else:
        self._send(Message(type=resp, to=m.from_, term=self.term, reject=True))

def step_candidate(self: RaftNode, m: Message) -> None:
    my_resp = MessageType.PRE_VOTE_RESP if self.role == Role.PRE_CANDIDATE else MessageType.VOTE_RESP
    t = m.type
    if t in (MessageType.PROP, MessageType.READ_INDEX, MessageType.TRANSFER_LEADER):
        self._drop(m, "no leader")
    elif t in (MessageType.APP, MessageType.HEARTBEAT, MessageType.SNAP):
        # A leader of our term exists (m.term == term here): stand down and follow it.
        self.become_follower(m.term, m.from_)
        self._step_follower(m)
    elif t == my_resp:
        self.tracker.record_vote(m.from_, not m.reject)
        result = self._poll_result()
        if result == VoteResult.WON:
            if self.role == Role.PRE_CANDIDATE:
                self._campaign(MessageType.VOTE)
            else:
                self.become_leader()
                self._bcast_append()
        elif result == VoteResult.LOST:
            # Pre-candidates also land here; their term is unchanged (§9.6).
            self.become_follower(self.term, NONE)
    # TIMEOUT_NOW and stale responses are ignored by a candidate.

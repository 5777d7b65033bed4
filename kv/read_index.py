"""A member's linearizable reads: ReadIndex rounds, batched (etcd's linearizableReadLoop).

A read waits for a ReadIndex round (Raft dissertation §6.4): the leader confirms
it still leads and names its commit index; the member answers once it has
applied that far. Reads that arrive while a round is in flight share the next
one. A round unanswered after ``read_index_retry`` (leader changed, message
lost) is asked again; with no leader the waiting reads fail as etcd's do.

These functions are Member's methods, written here to keep one idea per module;
kv/member.py binds each as a method of the same name with a leading underscore,
so ``self`` is the member.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kv import api
from kv.bugs import TeachingBug
from kv.errors import ErrLeaderChanged, ErrNoLeader, ProposalDropped
from kv.raft.messages import NONE, ReadState

if TYPE_CHECKING:
    from kv.member import Member, ReadRequest, Token


@dataclass(slots=True)
class ReadRound:
    ctx: bytes
    waiting: list[tuple[Token, ReadRequest]]
    sent_at: float
    index: int = -1  # the ReadIndex answer; -1 until it arrives



def read(self: Member, token: Token, req: ReadRequest, serializable: bool) -> None:
    if serializable:
        self.responses.append((token, self._fill(self.sm.read(req, self.now))))
        return
    if self.node.config.has_bug(TeachingBug.STALE_READ):
        # TEACHING BUG stale-read: a linearizable read answered from local state
        # without ReadIndex. A deposed leader or a lagging follower serves stale
        # data (Raft dissertation §6.4 explains why the round is needed).
        self.responses.append((token, self._fill(self.sm.read(req, self.now))))
        return
    if self.node.lead == NONE:
        raise ErrNoLeader()
    self.read_queue.append((token, req))
    if self.read_round is None:
        self._start_read_round()

def start_read_round(self: Member) -> None:
    if not self.read_queue:
        return
    ctx = f"{self.incarnation:x}/{self._next_seq()}".encode()
    batch, self.read_queue = self.read_queue, []
    self.read_round = ReadRound(ctx=ctx, waiting=batch, sent_at=self.now)
    try:
        self.node.read_index(ctx)
    except ProposalDropped:
        self.read_round = None
        for token, _ in batch:
            self.responses.append((token, ErrNoLeader()))

def read_state(self: Member, rs: ReadState) -> None:
    r = self.read_round
    if r is None or rs.request_ctx != r.ctx:
        return  # the answer to a round already asked again
    r.index = rs.index
    self.read_ready.append(r)
    self.read_round = None  # advance() starts the next round: the node takes no input mid-Ready

def flush_reads(self: Member) -> None:
    applied = self.node.log.applied
    while self.read_ready and self.read_ready[0].index <= applied:
        for token, req in self.read_ready.pop(0).waiting:
            if isinstance(req, api.AuthenticateRequest):
                self.auth_checks.append((token, req))  # advance() checks the password
                continue
            self.responses.append((token, self._fill(self.sm.read(req, self.now))))

def requeue_read_round(self: Member) -> None:
    """The round may never be answered (leader changed, message lost): put its reads
    back in the queue; ``_next_read_round`` asks again."""
    r = self.read_round
    if r is not None:
        self.read_round = None
        self.read_queue = r.waiting + self.read_queue

def next_read_round(self: Member) -> None:
    if self.read_round is not None or not self.read_queue:
        return
    if self.node.lead == NONE:
        # etcd fails reads with "leader changed" when their round is lost to an election.
        for token, _ in self.read_queue:
            self.responses.append((token, ErrLeaderChanged()))
        self.read_queue = []
        return
    self._start_read_round()

"""ReadIndex bookkeeping on the leader (Raft dissertation §6.4).

A read request records the commit index at its arrival; the leader then
confirms it is still leader by a round of heartbeats carrying the request's
context. Once a quorum acknowledges, every request queued up to and including
that one may be served at its recorded index.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from kv.raft.messages import Message
from kv.raft.quorum import VoteResult


@dataclass(slots=True)
class ReadIndexStatus:
    request: Message  # the READ_INDEX message: from_ tells who asked, context identifies it
    index: int  # the leader's commit index when the request arrived
    acks: dict[int, bool] = field(default_factory=dict)


class ReadOnly:
    __slots__ = ("pending", "queue")

    def __init__(self) -> None:
        self.pending: dict[bytes, ReadIndexStatus] = {}
        self.queue: list[bytes] = []

    def add_request(self, index: int, m: Message) -> None:
        ctx = m.context
        if ctx in self.pending:
            return  # a duplicate of a request already waiting
        self.pending[ctx] = ReadIndexStatus(request=m, index=index)
        self.queue.append(ctx)

    def recv_ack(self, node_id: int, ctx: bytes) -> dict[int, bool] | None:
        rs = self.pending.get(ctx)
        if rs is None:
            return None
        rs.acks[node_id] = True
        return rs.acks

    def advance(self, ctx: bytes) -> list[ReadIndexStatus]:
        """Release every request queued up to and including ctx (a quorum confirmed ctx)."""
        if ctx not in self.pending:
            return []
        i = self.queue.index(ctx) + 1
        released = [self.pending.pop(c) for c in self.queue[:i]]
        del self.queue[:i]
        return released

    def last_pending_ctx(self) -> bytes | None:
        return self.queue[-1] if self.queue else None

    def reset(self) -> None:
        self.pending.clear()
        self.queue.clear()

    def confirmed(self, ctx: bytes, vote_result: Callable[[dict[int, bool]], VoteResult]) -> bool:
        rs = self.pending.get(ctx)
        return rs is not None and vote_result(rs.acks) == VoteResult.WON

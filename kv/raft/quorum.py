"""Quorum arithmetic for majority and joint configurations (Raft §5.3, dissertation §4.3).

A joint configuration needs a majority of *both* the incoming and the outgoing
voter sets for every decision: commit and elections alike.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Mapping


class VoteResult(enum.Enum):
    PENDING = "pending"
    LOST = "lost"
    WON = "won"


def majority_committed_index(voters: Collection[int], acked: Callable[[int], int]) -> int:
    """The largest index that a majority of `voters` has acknowledged.

    An empty voter set commits "everything" (it imposes no constraint), which is
    what makes joint_committed_index of a non-joint config equal the incoming one.
    """
    n = len(voters)
    if n == 0:
        return 1 << 62
    # Sort descending; the value at position n // 2 is acked by n // 2 + 1 voters.
    indexes = sorted((acked(v) for v in voters), reverse=True)
    return indexes[n // 2]


def majority_vote_result(voters: Collection[int], votes: Mapping[int, bool]) -> VoteResult:
    if not voters:
        return VoteResult.WON  # an empty config wins by convention (joint with one side empty)
    granted = rejected = 0
    for v in voters:
        got = votes.get(v)
        if got is True:
            granted += 1
        elif got is False:
            rejected += 1
    q = len(voters) // 2 + 1
    if granted >= q:
        return VoteResult.WON
    if len(voters) - rejected < q:
        return VoteResult.LOST
    return VoteResult.PENDING


def joint_committed_index(
    incoming: Collection[int], outgoing: Collection[int], acked: Callable[[int], int]
) -> int:
    return min(majority_committed_index(incoming, acked), majority_committed_index(outgoing, acked))


def joint_vote_result(incoming: Collection[int], outgoing: Collection[int], votes: Mapping[int, bool]) -> VoteResult:
    a = majority_vote_result(incoming, votes)
    b = majority_vote_result(outgoing, votes)
    if a == b:
        return a
    if VoteResult.LOST in (a, b):
        return VoteResult.LOST
    return VoteResult.PENDING

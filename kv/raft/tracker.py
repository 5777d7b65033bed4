"""ProgressTracker: the membership configuration, each peer's Progress, and election votes."""

from __future__ import annotations

from dataclasses import dataclass, field

from kv.raft.messages import ConfState
from kv.raft.progress import Progress
from kv.raft.quorum import VoteResult, joint_committed_index, joint_vote_result


@dataclass(slots=True)
class TrackerConfig:
    """Who votes and who learns (etcd's tracker.Config)."""

    voters: set[int] = field(default_factory=set)  # the incoming (or only) voter set
    voters_outgoing: set[int] = field(default_factory=set)  # non-empty iff joint
    learners: set[int] = field(default_factory=set)
    # Voters of the outgoing config that become learners when the joint config is left.
    learners_next: set[int] = field(default_factory=set)
    auto_leave: bool = False

    @property
    def joint(self) -> bool:
        return bool(self.voters_outgoing)

    def copy(self) -> TrackerConfig:
        return TrackerConfig(
            set(self.voters), set(self.voters_outgoing), set(self.learners), set(self.learners_next), self.auto_leave
        )

    def conf_state(self) -> ConfState:
        return ConfState(
            voters=tuple(sorted(self.voters)),
            learners=tuple(sorted(self.learners)),
            voters_outgoing=tuple(sorted(self.voters_outgoing)),
            learners_next=tuple(sorted(self.learners_next)),
            auto_leave=self.auto_leave,
        )

    def all_voters(self) -> set[int]:
        return self.voters | self.voters_outgoing

    def __str__(self) -> str:
        s = f"voters={sorted(self.voters)}"
        if self.joint:
            s += f"&&{sorted(self.voters_outgoing)}"
        if self.learners:
            s += f" learners={sorted(self.learners)}"
        if self.learners_next:
            s += f" learners_next={sorted(self.learners_next)}"
        if self.auto_leave:
            s += " autoleave"
        return s


class ProgressTracker:
    __slots__ = ("config", "progress", "votes", "max_inflight")

    def __init__(self, max_inflight: int) -> None:
        self.config = TrackerConfig()
        self.progress: dict[int, Progress] = {}
        self.votes: dict[int, bool] = {}
        self.max_inflight = max_inflight

    def is_voter(self, node_id: int) -> bool:
        return node_id in self.config.voters or node_id in self.config.voters_outgoing

    def is_singleton(self) -> bool:
        return len(self.config.voters) == 1 and not self.config.joint

    def committed(self) -> int:
        prs = self.progress
        return joint_committed_index(
            self.config.voters, self.config.voters_outgoing, lambda v: prs[v].match_index if v in prs else 0
        )

    def reset_votes(self) -> None:
        self.votes = {}

    def record_vote(self, node_id: int, granted: bool) -> None:
        # The first answer from a node counts; a duplicate cannot change it.
        self.votes.setdefault(node_id, granted)

    def tally_votes(self) -> tuple[int, int, VoteResult]:
        granted = sum(1 for v, g in self.votes.items() if g and v in self.progress and not self.progress[v].is_learner)
        rejected = sum(
            1 for v, g in self.votes.items() if not g and v in self.progress and not self.progress[v].is_learner
        )
        return granted, rejected, joint_vote_result(self.config.voters, self.config.voters_outgoing, self.votes)

    def quorum_active(self, self_id: int) -> bool:
        """CheckQuorum: did a quorum of voters (counting ourselves) talk to us recently?"""
        active = {v: (v == self_id or (v in self.progress and self.progress[v].recent_active)) for v in self.config.all_voters()}
        return joint_vote_result(self.config.voters, self.config.voters_outgoing, active) == VoteResult.WON

    def voter_ids(self) -> list[int]:
        return sorted(self.config.all_voters())

    def learner_ids(self) -> list[int]:
        return sorted(self.config.learners | self.config.learners_next)

    def peer_ids(self) -> list[int]:
        return sorted(self.progress)

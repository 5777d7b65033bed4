"""Teaching bugs: named, off-by-default defects a learner can switch on.

Each member of :class:`TeachingBug` is checked in exactly one ``if`` in the
core, next to a comment naming the rule it breaks. None is ever on by default;
the simulator and the tests switch them on to show that the checkers catch
them (DESIGN.md, "Teaching bugs").
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from kv.errors import ConfigError


class TeachingBug(enum.Enum):
    # --- Raft level (kv/raft) ---
    COMMIT_OLD_TERM = "commit-old-term"
    FORGET_VOTE = "forget-vote"
    NO_LOG_CHECK = "no-log-check"
    ACK_BEFORE_PERSIST = "ack-before-persist"
    # --- data-model level (kv/read_index.py, kv/lease_expiry.py, kv/member.py) ---
    STALE_READ = "stale-read"
    LEASE_FOLLOWER_CLOCK = "lease-follower-clock"
    WATCH_SKIP = "watch-skip"

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self]


_DESCRIPTIONS: dict[TeachingBug, str] = {
    TeachingBug.COMMIT_OLD_TERM: (
        "a leader commits entries of earlier terms by counting replicas "
        "(breaks Raft §5.4.2, the Figure 8 scenario)"
    ),
    TeachingBug.FORGET_VOTE: (
        "the vote is not persisted, so a restarted node can vote twice in one term "
        "(breaks Election Safety, Raft §5.2)"
    ),
    TeachingBug.NO_LOG_CHECK: (
        "votes are granted without the up-to-date log check "
        "(breaks Leader Completeness, Raft §5.4.1)"
    ),
    TeachingBug.ACK_BEFORE_PERSIST: (
        "the leader counts its own new entries toward a quorum before they are fsynced "
        "(a crash loses a committed entry)"
    ),
    TeachingBug.STALE_READ: (
        "a linearizable read is answered from local state without ReadIndex "
        "(a deposed or partitioned member serves stale data)"
    ),
    TeachingBug.LEASE_FOLLOWER_CLOCK: (
        "a lease expires on whichever member's clock fires first, not the leader's, "
        "through the log (keys vanish while still kept alive)"
    ),
    TeachingBug.WATCH_SKIP: (
        "a watch resumes one revision late after a member restart (an event is lost)"
    ),
}


def parse_bugs(names: Iterable[str | TeachingBug]) -> frozenset[TeachingBug]:
    """Turn names like ``"commit-old-term"`` into bugs; an unknown name is a ConfigError."""
    bugs = set()
    for name in names:
        if isinstance(name, TeachingBug):
            bugs.add(name)
            continue
        try:
            bugs.add(TeachingBug(name))
        except ValueError:
            known = ", ".join(b.value for b in TeachingBug)
            raise ConfigError(f"unknown teaching bug {name!r} (known: {known})") from None
    return frozenset(bugs)

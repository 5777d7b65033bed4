"""Raft's values: entries, messages, hard state, snapshots, configuration changes.

Every value is a frozen, slotted dataclass and every kind is an enum (STYLE.md,
h11's events). The message set follows etcd-io/raft's raftpb so that a reader
of either recognises the other; ``NONE`` (0) is "no node" as in etcd.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

NONE = 0  # "no node": no vote cast, no leader known


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


class EntryType(enum.IntEnum):
    NORMAL = 0
    CONF_CHANGE = 1  # data is an encoded ConfChange (see kv.codec)


class MessageType(enum.IntEnum):
    # Local inputs turned into messages so that step() is the one entry point.
    HUP = 0  # start an election
    PROP = 2  # propose entries
    # Between peers.
    APP = 3  # AppendEntries (Raft Figure 2)
    APP_RESP = 4
    VOTE = 5  # RequestVote
    VOTE_RESP = 6
    SNAP = 7  # InstallSnapshot
    HEARTBEAT = 8
    HEARTBEAT_RESP = 9
    TRANSFER_LEADER = 13  # local: ask the leader to transfer to `from_`
    TIMEOUT_NOW = 14  # leader -> transferee: campaign now (dissertation §3.10)
    READ_INDEX = 15  # ReadIndex (dissertation §6.4), forwarded by followers
    READ_INDEX_RESP = 16
    PRE_VOTE = 17  # dissertation §9.6
    PRE_VOTE_RESP = 18
    SNAP_STATUS = 19  # local: the driver reports a snapshot send's outcome
    UNREACHABLE = 20  # local: the driver reports a peer unreachable


def is_local(t: MessageType) -> bool:
    return t in _LOCAL


def is_response(t: MessageType) -> bool:
    return t in _RESPONSES


_LOCAL = frozenset(
    {MessageType.HUP, MessageType.SNAP_STATUS, MessageType.UNREACHABLE, MessageType.TRANSFER_LEADER}
)
_RESPONSES = frozenset(
    {
        MessageType.APP_RESP,
        MessageType.VOTE_RESP,
        MessageType.HEARTBEAT_RESP,
        MessageType.READ_INDEX_RESP,
        MessageType.PRE_VOTE_RESP,
    }
)


@dataclass(frozen=True, slots=True)
class Entry:
    term: int
    index: int
    type: EntryType = EntryType.NORMAL
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class ConfState:
    """The membership a snapshot was taken under (etcd's raftpb.ConfState)."""

    voters: tuple[int, ...] = ()
    learners: tuple[int, ...] = ()
    voters_outgoing: tuple[int, ...] = ()  # non-empty while in a joint configuration
    learners_next: tuple[int, ...] = ()  # voters demoted to learners on leaving joint
    auto_leave: bool = False


@dataclass(frozen=True, slots=True)
class SnapshotMetadata:
    index: int = 0
    term: int = 0
    conf_state: ConfState = field(default_factory=ConfState)


@dataclass(frozen=True, slots=True)
class Snapshot:
    metadata: SnapshotMetadata = field(default_factory=SnapshotMetadata)
    data: bytes = b""

    @property
    def is_empty(self) -> bool:
        return self.metadata.index == 0


EMPTY_SNAPSHOT = Snapshot()


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be on stable storage before any message of the Ready is sent (Figure 2)."""

    term: int = 0
    vote: int = NONE
    commit: int = 0


EMPTY_HARD_STATE = HardState()


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile state, for the driver's information: need not be persisted."""

    leader: int
    role: Role


@dataclass(frozen=True, slots=True)
class ReadState:
    """A ReadIndex answer: once applied_index >= index, a read for `request_ctx` is linearizable."""

    index: int
    request_ctx: bytes


class ConfChangeType(enum.IntEnum):
    ADD_NODE = 0
    REMOVE_NODE = 1
    UPDATE_NODE = 2
    ADD_LEARNER_NODE = 3


class ConfChangeTransition(enum.IntEnum):
    """How a multi-change is carried out (etcd's ConfChangeTransition)."""

    AUTO = 0  # simple if possible, else joint with automatic leave
    JOINT_IMPLICIT = 1  # joint, left automatically once committed
    JOINT_EXPLICIT = 2  # joint, left by an explicit empty change


@dataclass(frozen=True, slots=True)
class ConfChangeSingle:
    type: ConfChangeType
    node_id: int


@dataclass(frozen=True, slots=True)
class ConfChange:
    """One or more membership changes proposed as one log entry.

    One change is the dissertation's single-server change (§4.1); several use
    joint consensus (§4.3). An empty change with a JOINT transition leaves a
    joint configuration. ``context`` is opaque to Raft (etcd puts the member's
    URLs there).
    """

    changes: tuple[ConfChangeSingle, ...] = ()
    transition: ConfChangeTransition = ConfChangeTransition.AUTO
    context: bytes = b""

    def leave_joint(self) -> bool:
        return not self.changes

    def enter_joint(self) -> tuple[bool, bool]:
        """(use joint consensus?, leave automatically?) as etcd's EnterJoint."""
        if self.transition != ConfChangeTransition.AUTO or len(self.changes) > 1:
            auto_leave = self.transition in (ConfChangeTransition.AUTO, ConfChangeTransition.JOINT_IMPLICIT)
            return True, auto_leave
        return False, False


@dataclass(frozen=True, slots=True)
class Message:
    type: MessageType
    to: int = NONE
    from_: int = NONE
    term: int = 0
    log_term: int = 0  # APP: term of entry at `index`; VOTE: last log term; APP_RESP reject: term at reject_hint
    index: int = 0  # APP: index preceding `entries`; VOTE: last log index; APP_RESP: match / rejected index
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    snapshot: Snapshot | None = None
    reject: bool = False
    reject_hint: int = 0
    context: bytes = b""  # ReadIndex request ctx; b"transfer" on a campaign forced by TIMEOUT_NOW

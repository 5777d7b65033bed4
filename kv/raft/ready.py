"""What a RaftNode hands its driver: the Ready (persist, send, apply, then advance), the
read-only Status view, and the error for a driver that breaks the Ready contract."""

from __future__ import annotations

from dataclasses import dataclass

from kv.errors import RaftKVError
from kv.raft.messages import ConfState, Entry, HardState, Message, ReadState, Role, Snapshot, SoftState
from kv.raft.progress import ProgressState


class DriverError(RaftKVError):
    """The driver broke the Ready contract (e.g. fed input before advancing a Ready)."""

    message = "raft: driver misuse"


@dataclass(frozen=True, slots=True)
class Ready:
    """Everything the driver must do, in order: persist, send, apply, then advance()."""

    soft_state: SoftState
    hard_state: HardState | None  # None when unchanged since the last Ready
    entries: tuple[Entry, ...]  # to append to stable storage (after truncating conflicts)
    snapshot: Snapshot | None  # to persist and hand to the state machine
    committed_entries: tuple[Entry, ...]  # to apply, in order
    messages: tuple[Message, ...]  # to send only after the above is durable (but see send_first)
    read_states: tuple[ReadState, ...]
    must_sync: bool  # whether persisting requires an fsync before sending
    # The messages may go out *before* the persist, overlapping the leader's disk write with
    # the followers' (Raft dissertation §10.2.1; etcd's raftNode does it): true for a leader's
    # Ready that changes neither term nor vote and installs no snapshot. Safe because the
    # leader counts its own entries toward a quorum only after advance().
    send_first: bool = False


@dataclass(frozen=True, slots=True)
class ProgressView:
    match_index: int
    next_index: int
    state: ProgressState
    is_learner: bool
    recent_active: bool


@dataclass(frozen=True, slots=True)
class Status:
    """A read-only view for tests, invariant checkers and etcd's Status RPC."""

    id: int
    term: int
    vote: int
    commit: int
    applied: int
    role: Role
    leader: int
    last_index: int
    conf_state: ConfState
    progress: dict[int, ProgressView]
    lead_transferee: int

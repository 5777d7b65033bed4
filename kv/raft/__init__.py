"""The sans-IO Raft core: see ``kv.raft.node.RaftNode`` and DESIGN.md, "The core contract"."""

from kv.raft.config import RaftConfig
from kv.raft.messages import (
    NONE,
    ConfChange,
    ConfChangeSingle,
    ConfChangeTransition,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    ReadState,
    Role,
    Snapshot,
    SnapshotMetadata,
    SoftState,
)
from kv.raft.node import RaftNode
from kv.raft.ready import Ready, Status
from kv.raft.storage import MemoryStorage, Storage

__all__ = [
    "NONE",
    "ConfChange",
    "ConfChangeSingle",
    "ConfChangeTransition",
    "ConfChangeType",
    "ConfState",
    "Entry",
    "EntryType",
    "HardState",
    "MemoryStorage",
    "Message",
    "MessageType",
    "RaftConfig",
    "RaftNode",
    "ReadState",
    "Ready",
    "Role",
    "Snapshot",
    "SnapshotMetadata",
    "SoftState",
    "Status",
    "Storage",
]

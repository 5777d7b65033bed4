"""RaftConfig: every knob of a node, validated once at construction.

Times are float seconds of the driver's clock (DESIGN.md: time is passed in).
As etcd-io/raft's ``Config.validate``, each failure is one sentence naming the
field and the rule it broke.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from kv.bugs import TeachingBug, parse_bugs
from kv.errors import ConfigError
from kv.raft.messages import NONE


@dataclass(frozen=True, slots=True)
class RaftConfig:
    id: int
    # Election timeouts are drawn uniformly from [min, max] on every reset (Raft §5.2).
    election_timeout_min: float = 0.150
    election_timeout_max: float = 0.300
    heartbeat_interval: float = 0.050
    pre_vote: bool = True
    check_quorum: bool = True
    # Flow control (etcd's MaxSizePerMsg / MaxInflightMsgs).
    max_size_per_msg: int = 1 << 20
    max_inflight_msgs: int = 256
    # Bound on uncommitted entries a leader accepts (0 = unbounded); protects memory.
    max_uncommitted_entries_size: int = 0
    # Leadership transfer gives up after this long (defaults to election_timeout_max).
    transfer_timeout: float = 0.0
    bugs: frozenset[TeachingBug] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if self.id == NONE:
            raise ConfigError("id must not be 0 (0 means 'no node')")
        if self.id < 0:
            raise ConfigError("id must be positive")
        if not self.heartbeat_interval > 0:
            raise ConfigError("heartbeat_interval must be greater than 0")
        if not self.election_timeout_min > 0:
            raise ConfigError("election_timeout_min must be greater than 0")
        # Written as "not (ok)" so that NaN, which compares false with everything, fails
        # too: a NaN timeout makes a deadline that never falls due (no election ever).
        if not self.election_timeout_max >= self.election_timeout_min:
            raise ConfigError("election_timeout_max must not be less than election_timeout_min")
        if self.heartbeat_interval >= self.election_timeout_min:
            raise ConfigError("heartbeat_interval must be less than election_timeout_min")
        if self.max_size_per_msg <= 0:
            raise ConfigError("max_size_per_msg must be greater than 0")
        if self.max_inflight_msgs <= 0:
            raise ConfigError("max_inflight_msgs must be greater than 0")
        if self.max_uncommitted_entries_size < 0:
            raise ConfigError("max_uncommitted_entries_size must not be negative")
        if not self.transfer_timeout >= 0:  # NaN too: a transfer that never times out blocks proposals
            raise ConfigError("transfer_timeout must not be negative")
        # Accept names ("commit-old-term") as well as enum members; unknown names fail here.
        object.__setattr__(self, "bugs", parse_bugs(self.bugs))
        if self.transfer_timeout == 0:
            object.__setattr__(self, "transfer_timeout", self.election_timeout_max)

    def has_bug(self, bug: TeachingBug) -> bool:
        # Hot path: an empty set answers without hashing the enum (Enum.__hash__ is Python code).
        return bool(self.bugs) and bug in self.bugs

    @staticmethod
    def with_bugs(names: Iterable[str]) -> frozenset[TeachingBug]:
        return parse_bugs(names)

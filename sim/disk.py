"""A member's disk: writes take time, fsyncs take longer, and a crash keeps only what was synced.

The disk records, in order, what the driver persisted for each Ready (hard
state, entries, a snapshot received from the leader, a snapshot the member
took itself) and how many of those writes an fsync has made durable. A Ready
with ``must_sync`` is fsynced before its messages leave (Raft Figure 2: persist
before responding); anything after the last fsync is lost on a crash, which is
exactly how the ``ack-before-persist`` teaching bug bites. ``crash()`` returns
the ``MemoryStorage`` a restarted member is built from (kv's restore).

``persist`` is the disk as a simpy actor: the member driver ``yield from``\\ s it,
so a member is busy for the write (and fsync) latency, as etcd's raft loop is
while it writes its WAL. A member killed during the wait never records the
write: it was still in the page cache when the machine died.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Generator
from dataclasses import dataclass, field

import simpy

from kv.raft.messages import Entry, HardState, Snapshot
from kv.raft.storage import MemoryStorage
from sim.distributions import Latency


class WriteKind(enum.Enum):
    HARD_STATE = "hard-state"
    ENTRIES = "entries"
    SNAPSHOT = "snapshot"  # installed from the leader: replaces the log
    APP_SNAPSHOT = "app-snapshot"  # taken by the member itself: compacts the log before it


@dataclass(frozen=True, slots=True)
class DiskProfile:
    write: Latency
    fsync: Latency


@dataclass(slots=True)
class DiskStats:
    writes: int = 0
    fsyncs: int = 0
    crashes: int = 0
    lost_writes: int = 0  # written but not fsynced when a crash came


@dataclass(slots=True)
class Disk:
    profile: DiskProfile
    rng: random.Random
    writes: list[tuple[WriteKind, object]] = field(default_factory=list)
    synced: int = 0  # writes[:synced] are durable
    slow_factor: float = 1.0  # the `disk` fault multiplies fsync latency by this
    stats: DiskStats = field(default_factory=DiskStats)

    def record(
        self, hard_state: HardState | None, entries: tuple[Entry, ...], snapshot: Snapshot | None
    ) -> None:
        """Append what one Ready persists, in the order MemoryStorage.save applies it."""
        if snapshot is not None:
            self.writes.append((WriteKind.SNAPSHOT, snapshot))
        if entries:
            self.writes.append((WriteKind.ENTRIES, entries))
        if hard_state is not None:
            self.writes.append((WriteKind.HARD_STATE, hard_state))
        self.stats.writes += 1

    def record_app_snapshot(self, snapshot: Snapshot) -> None:
        self.writes.append((WriteKind.APP_SNAPSHOT, snapshot))
        self.stats.writes += 1

    def fsync(self) -> None:
        self.synced = len(self.writes)
        self.stats.fsyncs += 1

    def write_latency(self) -> float:
        return self.profile.write.sample(self.rng)

    def fsync_latency(self) -> float:
        return self.profile.fsync.sample(self.rng) * self.slow_factor

    def crash(self) -> MemoryStorage:
        """Lose every write after the last fsync; return the storage a restart rebuilds from it."""
        self.stats.crashes += 1
        self.stats.lost_writes += len(self.writes) - self.synced
        del self.writes[self.synced :]
        return self.rebuild()

    def rebuild(self) -> MemoryStorage:
        st = MemoryStorage()
        for kind, payload in self.writes:
            replay(st, kind, payload)
        return st

    def wipe(self) -> None:
        """A brand-new data directory (a member removed and re-added starts empty, as in etcd)."""
        self.writes.clear()
        self.synced = 0


def replay(st: MemoryStorage, kind: WriteKind, payload: object) -> None:
    if kind is WriteKind.HARD_STATE:
        assert isinstance(payload, HardState)
        st.set_hard_state(payload)
    elif kind is WriteKind.ENTRIES:
        assert isinstance(payload, tuple)
        st.append(payload)
    elif kind is WriteKind.SNAPSHOT:
        assert isinstance(payload, Snapshot)
        if payload.metadata.index > st.snapshot().metadata.index:
            st.apply_snapshot(payload)
    else:
        assert isinstance(payload, Snapshot)
        meta = payload.metadata
        if meta.index > st.snapshot().metadata.index and meta.index <= st.last_index():
            st.create_snapshot(meta.index, meta.conf_state, payload.data)
            st.compact(meta.index)


def persist(
    env: simpy.Environment,
    disk: Disk,
    hard_state: HardState | None,
    entries: tuple[Entry, ...],
    snapshot: Snapshot | None,
    must_sync: bool,
) -> Generator[simpy.events.Event, object, None]:
    """The disk writing one Ready: write latency plus fsync latency when it must sync.

    One timeout covers both: nothing else happens on this member in between. A
    write that needs no fsync (a commit index moving) lands in the page cache at
    once and costs no simulated time (profiling: a timeout per such Ready was a
    large share of all events), but stays unsynced — lost by a crash — until
    the next fsync.
    """
    if must_sync:
        delay = disk.write_latency() + disk.fsync_latency()
        if delay > 0:
            yield env.timeout(delay)
    disk.record(hard_state, entries, snapshot)
    if must_sync:
        disk.fsync()

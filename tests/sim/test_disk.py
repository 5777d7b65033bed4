"""The disk model: latency, fsync, and a crash that keeps exactly the synced prefix."""

from __future__ import annotations

import random

import simpy
from hypothesis import given
from hypothesis import strategies as st

from kv.raft.messages import Entry, HardState
from kv.raft.storage import MemoryStorage
from sim.disk import Disk, DiskProfile, persist
from sim.distributions import Latency

PROFILE = DiskProfile(write=Latency.parse("constant:0.001"), fsync=Latency.parse("constant:0.004"))


def make_disk() -> Disk:
    return Disk(PROFILE, random.Random(0))


# A Ready-like write: a run of entries appended at some index (possibly overwriting), a hard state, a sync flag.
writes = st.lists(
    st.tuples(st.integers(0, 6), st.integers(1, 4), st.integers(1, 5), st.booleans()), min_size=1, max_size=12
)


@given(writes)
def test_crash_keeps_exactly_the_writes_up_to_the_last_fsync(ws: list[tuple[int, int, int, bool]]) -> None:
    disk = make_disk()
    live = MemoryStorage()
    durable_view = MemoryStorage()
    synced_ops: list[tuple[HardState, tuple[Entry, ...]]] = []
    pending: list[tuple[HardState, tuple[Entry, ...]]] = []
    for back, count, term, must_sync in ws:
        start = max(1, live.last_index() + 1 - back)
        ents = tuple(Entry(term=term, index=start + i, data=b"x") for i in range(count))
        hs = HardState(term=term, vote=1, commit=0)
        live.save(hs, ents, None)
        disk.record(hs, ents, None)
        pending.append((hs, ents))
        if must_sync:
            disk.fsync()
            synced_ops += pending
            pending = []
    for hs, ents in synced_ops:
        durable_view.save(hs, ents, None)
    rebuilt = disk.crash()
    assert rebuilt.hard_state == durable_view.hard_state
    assert rebuilt.last_index() == durable_view.last_index()
    assert rebuilt.entries(1, rebuilt.last_index() + 1) == durable_view.entries(1, durable_view.last_index() + 1)
    assert disk.stats.lost_writes == sum(1 for _ in pending) * 2  # entries + hard state per unsynced Ready


def test_persist_takes_write_plus_fsync_latency_only_when_it_must_sync() -> None:
    env = simpy.Environment()
    disk = make_disk()
    done: list[float] = []

    def writer(env: simpy.Environment):
        yield from persist(env, disk, HardState(term=1), (), None, must_sync=True)
        done.append(env.now)
        yield from persist(env, disk, HardState(term=1, commit=1), (), None, must_sync=False)
        done.append(env.now)

    env.process(writer(env))
    env.run()
    assert done == [0.005, 0.005]  # an unsynced write lands in the page cache at once
    assert disk.synced == 1 and len(disk.writes) == 2


def test_a_member_killed_mid_write_never_records_it() -> None:
    env = simpy.Environment()
    disk = make_disk()

    def writer(env: simpy.Environment):
        try:
            yield from persist(env, disk, HardState(term=3), (Entry(term=3, index=1),), None, must_sync=True)
        except simpy.Interrupt:
            return

    p = env.process(writer(env))

    def killer(env: simpy.Environment):
        yield env.timeout(0.002)
        p.interrupt("kill")

    env.process(killer(env))
    env.run()
    assert disk.writes == [] and disk.crash().last_index() == 0


def test_slow_fsync_multiplies_only_fsync_latency() -> None:
    disk = make_disk()
    disk.slow_factor = 50.0
    assert disk.fsync_latency() == 0.2
    assert disk.write_latency() == 0.001


def test_wipe_gives_an_empty_disk() -> None:
    disk = make_disk()
    disk.record(HardState(term=2), (Entry(term=2, index=1),), None)
    disk.fsync()
    disk.wipe()
    assert disk.rebuild().last_index() == 0

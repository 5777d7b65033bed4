"""Specifications of real_net.wal and real_net.disk_storage: durable Raft storage that recovers exactly.

The model is kv's MemoryStorage fed the same calls. After a reopen, the
durable view must equal the model *restarted as etcd restarts*: the snapshot,
the entries above it, the hard state (entries below the snapshot that memory
kept for slow followers are not reloaded).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from kv.errors import CorruptRecord
from kv.raft.messages import ConfState, Entry, EntryType, HardState, Snapshot, SnapshotMetadata
from kv.raft.storage import ErrSnapOutOfDate, ErrUnavailable, MemoryStorage
from real_net import wal as wal_module
from real_net.disk_storage import DiskStorage, snapshot_name
from real_net.wal_format import WalLocked

# The property tests run with etcd's --unsafe-no-fsync: what they check is the format and the
# replay, and their crashes are simulated by cutting files, which needs no page cache flush.
# The tests further down keep real fsyncs.
SMALL_SEGMENT = 4096  # forces segment cuts and releases after a few dozen records
ONE_SEGMENT = 1 << 20  # for crash tests: everything in one segment


@dataclass(frozen=True)
class View:
    """Everything a restarted RaftNode reads from its storage."""

    hard_state: HardState
    conf_state: ConfState
    snapshot: Snapshot
    first_index: int
    last_index: int
    snapshot_term: int
    entries: tuple[Entry, ...]


def full_view(s: MemoryStorage) -> View:
    hs, cs = s.initial_state()
    first, last = s.first_index(), s.last_index()
    return View(hs, cs, s.snapshot(), first, last, s.term(first - 1), tuple(s.entries(first, last + 1)))


def restarted(model: MemoryStorage) -> MemoryStorage:
    """The model as etcd restarts it: snapshot, then the entries above it, then the hard state."""
    out = MemoryStorage()
    snap = model.snapshot()
    if not snap.is_empty:
        out.apply_snapshot(snap)
    out.append(model.entries(snap.metadata.index + 1, model.last_index() + 1))
    out.set_hard_state(model.hard_state)
    return out


entry_data = st.binary(max_size=12)
terms = st.integers(min_value=1, max_value=6)
hard_states = st.builds(HardState, term=st.integers(0, 6), vote=st.integers(0, 3), commit=st.integers(0, 40))
conf_states = st.builds(
    ConfState,
    voters=st.lists(st.integers(1, 5), min_size=1, max_size=3, unique=True).map(tuple),
    learners=st.lists(st.integers(6, 7), max_size=1, unique=True).map(tuple),
)


def entries_from(start: int, spec: list[tuple[int, bytes]]) -> tuple[Entry, ...]:
    return tuple(Entry(term=t, index=start + i, data=d) for i, (t, d) in enumerate(spec))


class StorageMachine(RuleBasedStateMachine):
    """Random saves (with conflicting truncations), snapshots, compactions and reopens."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="raftkv-disk-"))
        self.disk = DiskStorage(self.dir, segment_size=SMALL_SEGMENT, unsafe_no_fsync=True)
        self.model = MemoryStorage()

    def teardown(self) -> None:
        self.disk.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(data=st.data(), hs=st.none() | hard_states, sync=st.booleans(),
          spec=st.lists(st.tuples(terms, entry_data), max_size=5))
    def save_entries(self, data: st.DataObject, hs: HardState | None, sync: bool,
                     spec: list[tuple[int, bytes]]) -> None:
        # Start anywhere from just above the snapshot to just past the end: a start at
        # or below last_index truncates the conflicting suffix, as Raft's append does.
        lo = self.model.snapshot().metadata.index + 1
        start = data.draw(st.integers(lo, self.model.last_index() + 1), label="start")
        ents = entries_from(start, spec)
        self.model.save(hs, ents, None)
        self.disk.save(hs, ents, None, sync=sync)

    @rule(data=st.data(), term=terms, cs=conf_states, payload=entry_data,
          spec=st.lists(st.tuples(terms, entry_data), max_size=3))
    def install_snapshot(self, data: st.DataObject, term: int, cs: ConfState, payload: bytes,
                         spec: list[tuple[int, bytes]]) -> None:
        snap_index = self.model.snapshot().metadata.index
        index = data.draw(st.integers(snap_index + 1, self.model.last_index() + 5), label="index")
        snap = Snapshot(SnapshotMetadata(index=index, term=term, conf_state=cs), payload)
        ents = entries_from(index + 1, spec)
        self.model.save(None, ents, snap)
        self.disk.save(None, ents, snap)

    @precondition(lambda self: self.model.last_index() > self.model.snapshot().metadata.index)
    @rule(data=st.data(), cs=conf_states, payload=entry_data)
    def create_snapshot(self, data: st.DataObject, cs: ConfState, payload: bytes) -> None:
        lo = self.model.snapshot().metadata.index + 1
        index = data.draw(st.integers(lo, self.model.last_index()), label="index")
        assert self.disk.create_snapshot(index, cs, payload) == self.model.create_snapshot(index, cs, payload)
        # What the snapshot covers is released: every older segment kept holds a later entry.
        for seg in self.disk.wal.segments[:-1]:
            assert seg.max_entry_index > index
        assert [p.name for p in (self.dir / "snap").iterdir()] == [snapshot_name(self.disk.snapshot().metadata)]

    @precondition(lambda self: self.model.snapshot().metadata.index >= self.model.first_index())
    @rule(data=st.data())
    def compact(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(self.model.first_index(), self.model.snapshot().metadata.index))
        self.model.compact(index)
        self.disk.compact(index)

    @rule()
    def reopen(self) -> None:
        self.disk.close()
        self.disk = DiskStorage(self.dir, segment_size=SMALL_SEGMENT, unsafe_no_fsync=True)
        self.model = restarted(self.model)
        assert full_view(self.disk) == full_view(self.model)

    @invariant()
    def memory_view_matches_the_model(self) -> None:
        assert full_view(self.disk) == full_view(self.model)


StorageMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_reopen_yields_what_a_memory_storage_fed_the_same_calls_holds = StorageMachine.TestCase


# --- crashes: a WAL cut at any byte recovers a prefix of what was written ----------


@dataclass
class Written:
    dir: Path
    segment: Path
    ends: list[int]  # ends[k]: end offset of the k-th save's record; ends[0]: end of the head
    views: list[View]  # views[k]: the storage after k saves
    synced_end: int  # end of the last save made with sync=True


one_record_saves = st.lists(
    st.one_of(
        st.tuples(st.just("entry"), st.integers(0, 3), terms, entry_data, st.booleans()),
        st.tuples(st.just("hs"), hard_states, st.booleans()),
    ),
    min_size=1,
    max_size=25,
)


def write(root: Path, ops: list[Any]) -> Written:
    """Apply saves that each write exactly one WAL record; note where each ends."""
    d = root / "member"
    model = MemoryStorage()
    disk = DiskStorage(d, segment_size=ONE_SEGMENT, unsafe_no_fsync=True)
    segment, head_end = disk.wal.position()
    ends, views, synced_end = [head_end], [full_view(model)], head_end
    for op in ops:
        hs: HardState | None
        ents: tuple[Entry, ...]
        if op[0] == "entry":
            _, back, term, payload, sync = op
            index = max(1, model.last_index() + 1 - back)  # back > 0 overwrites a suffix
            hs, ents = None, (Entry(term=term, index=index, data=payload),)
        else:
            _, hs, sync = op
            ents = ()
        model.save(hs, ents, None)
        disk.save(hs, ents, None, sync=sync)
        ends.append(disk.wal.position()[1])
        views.append(full_view(model))
        if sync:
            synced_end = ends[-1]
    disk.close()
    return Written(d, segment, ends, views, synced_end)


def truncate(path: Path, size: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(size)


def flip(path: Path, offset: int, mask: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([b ^ mask]))


crash_settings = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@crash_settings
@given(ops=one_record_saves, data=st.data())
def test_a_wal_cut_at_any_byte_recovers_exactly_the_records_wholly_before_the_cut(
    tmp_path_factory: pytest.TempPathFactory, ops: list[Any], data: st.DataObject
) -> None:
    w = write(tmp_path_factory.mktemp("crash"), ops)
    cut = data.draw(st.integers(w.ends[0], w.ends[-1]), label="cut")
    truncate(w.segment, cut)
    k = max(i for i, end in enumerate(w.ends) if end <= cut)
    with DiskStorage(w.dir, segment_size=ONE_SEGMENT, unsafe_no_fsync=True) as recovered:
        assert full_view(recovered) == w.views[k]


@crash_settings
@given(ops=one_record_saves, data=st.data())
def test_a_crash_in_the_unsynced_tail_loses_nothing_that_was_synced(
    tmp_path_factory: pytest.TempPathFactory, ops: list[Any], data: st.DataObject
) -> None:
    w = write(tmp_path_factory.mktemp("crash"), ops)
    cut = data.draw(st.integers(w.synced_end, w.ends[-1]), label="cut")
    truncate(w.segment, cut)
    synced = w.ends.index(w.synced_end)
    with DiskStorage(w.dir, segment_size=ONE_SEGMENT, unsafe_no_fsync=True) as recovered:
        got = full_view(recovered)
    assert got in w.views[synced:]
    # ... and the storage goes on: the torn tail was cut, new saves land after the survivors.
    with DiskStorage(w.dir, segment_size=ONE_SEGMENT, unsafe_no_fsync=True) as again:
        assert full_view(again) == got
        again.save(HardState(term=9, vote=1, commit=0), (), None)
    with DiskStorage(w.dir, segment_size=ONE_SEGMENT, unsafe_no_fsync=True) as last:
        assert last.hard_state == HardState(term=9, vote=1, commit=0)


@crash_settings
@given(ops=one_record_saves.filter(lambda ops: len(ops) >= 2), data=st.data())
def test_a_flipped_byte_before_the_last_record_raises_corrupt_record_naming_file_and_offset(
    tmp_path_factory: pytest.TempPathFactory, ops: list[Any], data: st.DataObject
) -> None:
    w = write(tmp_path_factory.mktemp("flip"), ops)
    at = data.draw(st.integers(0, w.ends[-2] - 1), label="offset")
    flip(w.segment, at, data.draw(st.integers(1, 255), label="mask"))
    with pytest.raises(CorruptRecord, match=rf"{w.segment.name}: offset \d+"):
        DiskStorage(w.dir, segment_size=ONE_SEGMENT, unsafe_no_fsync=True)


def test_a_torn_sector_in_the_last_record_is_cut_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    d = tmp_path / "m"
    with DiskStorage(d, segment_size=ONE_SEGMENT) as s:
        s.save(HardState(1, 1, 0), (Entry(1, 1, data=b"a"),), None)
        before = full_view(s)
        seg, start = s.wal.position()
        s.save(None, (Entry(1, 2, data=b"\xff" * 3000),), None)
    sector = (start // 512 + 2) * 512  # a whole sector inside the big record
    with open(seg, "r+b") as f:
        f.seek(sector)
        f.write(bytes(512))
    with caplog.at_level(logging.WARNING, logger="real_net.wal"), DiskStorage(d, segment_size=ONE_SEGMENT) as s:
        assert full_view(s) == before
    assert "torn" in caplog.text


def test_corruption_in_a_completed_segment_raises_even_at_its_end(tmp_path: Path) -> None:
    d = tmp_path / "m"
    with DiskStorage(d, segment_size=SMALL_SEGMENT) as s:
        for i in range(1, 300):
            s.save(HardState(1, 1, i - 1), (Entry(1, i, data=b"x" * 10),), None, sync=False)
        segments = [seg.path for seg in s.wal.segments]
    assert len(segments) > 2
    truncate(segments[0], segments[0].stat().st_size - 3)
    with pytest.raises(CorruptRecord, match=rf"{segments[0].name}: offset \d+: .*completed segment"):
        DiskStorage(d, segment_size=SMALL_SEGMENT)


def test_a_missing_segment_raises(tmp_path: Path) -> None:
    d = tmp_path / "m"
    with DiskStorage(d, segment_size=SMALL_SEGMENT) as s:
        for i in range(1, 300):
            s.save(None, (Entry(1, i, data=b"x" * 10),), None, sync=False)
        middle = s.wal.segments[1].path
    middle.unlink()
    with pytest.raises(CorruptRecord, match="missing"):
        DiskStorage(d, segment_size=SMALL_SEGMENT)


# --- snapshots ------------------------------------------------------------------


def fill(s: DiskStorage, n: int, term: int = 1) -> None:
    start = s.last_index() + 1
    s.save(HardState(term, 1, start + n - 1), entries_from(start, [(term, b"v%d" % i) for i in range(n)]), None)


def test_a_snapshot_releases_the_segments_it_covers_and_older_snapshot_files(tmp_path: Path) -> None:
    d = tmp_path / "m"
    with DiskStorage(d, segment_size=SMALL_SEGMENT) as s:
        for _ in range(40):
            fill(s, 10)
        many = len(s.wal.segments)
        s.create_snapshot(200, ConfState(voters=(1,)), b"state@200")
        s.create_snapshot(390, ConfState(voters=(1,)), b"state@390")
        assert len(s.wal.segments) < many
        s.compact(380)
        assert s.first_index() == 381
    assert [p.name for p in (d / "snap").iterdir()] == [snapshot_name(SnapshotMetadata(390, 1, ConfState((1,))))]
    with DiskStorage(d, segment_size=SMALL_SEGMENT) as s:
        assert s.snapshot().data == b"state@390"
        assert (s.first_index(), s.last_index()) == (391, 400)
        assert s.hard_state.commit == 400


def test_an_installed_snapshot_discards_the_log_written_before_it_across_a_restart(tmp_path: Path) -> None:
    d = tmp_path / "m"
    with DiskStorage(d) as s:
        fill(s, 10, term=1)  # a follower's divergent log 1..10
        snap = Snapshot(SnapshotMetadata(index=5, term=2, conf_state=ConfState((1, 2, 3))), b"leader@5")
        s.save(HardState(2, 0, 5), (), snap)
        assert (s.first_index(), s.last_index()) == (6, 5)
    with DiskStorage(d) as s:
        assert (s.first_index(), s.last_index()) == (6, 5)  # entries 6..10 of term 1 stay gone
        assert s.snapshot() == snap and s.term(5) == 2


def test_snapshot_out_of_date_and_gaps_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    with DiskStorage(tmp_path / "m") as s:
        fill(s, 5)
        s.create_snapshot(3, ConfState((1,)), b"s")
        position = s.wal.position()
        with pytest.raises(ErrSnapOutOfDate):
            s.save(None, (), Snapshot(SnapshotMetadata(3, 1, ConfState((1,))), b"old"))
        with pytest.raises(ErrSnapOutOfDate):
            s.create_snapshot(2, ConfState((1,)), b"old")
        with pytest.raises(ErrUnavailable):
            s.save(None, (Entry(1, 9),), None)
        assert s.wal.position() == position


def test_a_snapshot_file_without_its_wal_marker_is_ignored(tmp_path: Path) -> None:
    """A crash after the snapshot file was renamed but before the WAL marker was written."""
    d = tmp_path / "m"
    with DiskStorage(d) as s:
        fill(s, 10)
        before = full_view(s)
    orphan = Snapshot(SnapshotMetadata(8, 1, ConfState((1,))), b"never confirmed")
    from kv import codec

    (d / "snap" / snapshot_name(orphan.metadata)).write_bytes(codec.frame(codec.encode_snapshot(orphan)))
    (d / "snap" / "half-written.snap.tmp").write_bytes(b"\x00\x01")
    with DiskStorage(d) as s:
        assert full_view(s) == before
    assert list((d / "snap").iterdir()) == []


def test_a_corrupt_snapshot_file_is_an_error_naming_it_when_the_wal_cannot_replace_it(tmp_path: Path) -> None:
    d = tmp_path / "m"
    with DiskStorage(d, segment_size=SMALL_SEGMENT) as s:
        for _ in range(30):
            fill(s, 10)
        s.create_snapshot(290, ConfState((1,)), b"state")
    snap_file = d / "snap" / snapshot_name(SnapshotMetadata(290, 1, ConfState((1,))))
    flip(snap_file, 12, 0x40)
    with pytest.raises(CorruptRecord, match=snap_file.name):
        DiskStorage(d, segment_size=SMALL_SEGMENT)


def test_a_corrupt_snapshot_file_falls_back_to_the_full_log_when_the_wal_still_has_it(tmp_path: Path) -> None:
    d = tmp_path / "m"
    with DiskStorage(d) as s:
        fill(s, 10)
        s.create_snapshot(7, ConfState((1,)), b"state")
        entries = s.entries(8, 11)
    snap_file = d / "snap" / snapshot_name(SnapshotMetadata(7, 1, ConfState((1,))))
    flip(snap_file, 12, 0x40)
    with DiskStorage(d) as s:
        assert s.snapshot().is_empty and s.first_index() == 1 and s.entries(8, 11) == entries
    assert (snap_file.parent / (snap_file.name + ".broken")).exists()


# --- syncing and locking ----------------------------------------------------------


def test_save_fsyncs_once_per_call_and_only_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = wal_module._fdatasync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(wal_module, "_fdatasync", counting)
    with DiskStorage(tmp_path / "m") as s:
        s.save(HardState(1, 1, 0), entries_from(1, [(1, b"a"), (1, b"b"), (1, b"c")]), None)
        assert len(calls) == 1
        s.save(HardState(1, 1, 3), entries_from(4, [(1, b"d")]), None, sync=False)
        assert len(calls) == 1
        s.sync()
        s.sync()  # nothing new: no second fsync
        assert len(calls) == 2


def test_a_data_dir_cannot_be_opened_twice(tmp_path: Path) -> None:
    with DiskStorage(tmp_path / "m"):
        with pytest.raises(WalLocked):
            DiskStorage(tmp_path / "m")
    DiskStorage(tmp_path / "m").close()  # the lock went with close()


def test_conf_change_entries_and_large_entries_round_trip(tmp_path: Path) -> None:
    big = bytes(range(256)) * 4096  # 1 MiB: larger than a small segment
    ents = (Entry(1, 1, EntryType.CONF_CHANGE, b"cc"), Entry(1, 2, data=big), Entry(1, 3))
    with DiskStorage(tmp_path / "m", segment_size=SMALL_SEGMENT) as s:
        s.save(HardState(1, 1, 3), ents, None)
    with DiskStorage(tmp_path / "m", segment_size=SMALL_SEGMENT) as s:
        assert tuple(s.entries(1, 4)) == ents

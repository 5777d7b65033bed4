"""Raft storage that survives a crash: a MemoryStorage made durable by a WAL and snapshot files.

Why it is built this way: etcd keeps raft's ``MemoryStorage`` as the log the
node reads, and beside it a WAL and a ``snap`` directory that make every change
durable (etcdserver's ``raftNode`` saves each Ready to the WAL, then updates the
MemoryStorage). ``DiskStorage`` does both in one object, so a driver calls one
``save`` per Ready and hands the same object to the Member and its RaftNode:

* ``save(hard_state, entries, snapshot, sync=True)``: a snapshot is written to
  its own file first (temp file, fsync, rename, fsync of the directory — the
  rename is atomic, so a snapshot file is whole or absent); then one WAL batch:
  the snapshot marker, one record per entry, the hard state; then, if `sync`,
  **one** fdatasync (group commit: one per Raft Ready, ``Ready.must_sync``).
  The driver may instead pass ``sync=False`` and call ``sync()`` itself, e.g.
  in a worker thread so the event loop keeps accepting proposals for the next
  Ready while the disk works.
* ``create_snapshot`` (the member snapshotting its own state, as etcd does every
  ``--snapshot-count`` entries) writes the snapshot file and a WAL marker,
  syncs, then releases the WAL segments and snapshot files the new snapshot
  makes unnecessary.
* ``compact`` only trims the in-memory log (raft's ``MemoryStorage.Compact``);
  disk space comes back when a snapshot releases segments.

On open, the newest snapshot that a WAL marker confirms and whose file is
valid is loaded (a snapshot file without its marker was being written when
the member crashed, and is ignored), then the WAL is replayed in order on top
of it: entries above the snapshot (an entry at or below the last index
truncates the conflicting suffix first, as Raft's append did; one at or below
the snapshot index discards every entry above the snapshot replayed so far),
hard states, and markers — an *installed* snapshot marker discards the entries
written before it, exactly as installing it did. As after an etcd restart, the log
then starts at the snapshot: entries below it that were kept in memory for
slow followers are not reloaded.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from kv import codec
from kv.errors import CorruptRecord
from kv.raft.messages import ConfState, Entry, HardState, Snapshot, SnapshotMetadata
from kv.raft.storage import ErrSnapOutOfDate, ErrUnavailable, MemoryStorage
from real_net.wal import WAL
from real_net.wal_format import SEGMENT_SIZE, RecordType, RecordValue, WalRecord

log = logging.getLogger(__name__)

_SNAP_NAME = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.snap$")


def snapshot_name(meta: SnapshotMetadata) -> str:
    """``<term>-<index>.snap`` in 16 hex digits each, as etcd names its snapshot files."""
    return f"{meta.term:016x}-{meta.index:016x}.snap"


class DiskStorage(MemoryStorage):
    """The Storage a real member runs on: reads from memory, every write made durable first.

    `directory` holds ``wal/`` and ``snap/`` (etcd's ``member/wal`` and ``member/snap``).
    Opening replays them; ``close()`` releases the directory lock. `unsafe_no_fsync`
    is etcd's ``--unsafe-no-fsync``: for tests and benchmarks only.
    """

    __slots__ = ("dir", "wal", "snap_dir", "_closed")

    def __init__(
        self, directory: str | os.PathLike[str], *, segment_size: int = SEGMENT_SIZE, unsafe_no_fsync: bool = False
    ) -> None:
        super().__init__()
        self.dir = Path(directory)
        self.snap_dir = self.dir / "snap"
        self.snap_dir.mkdir(parents=True, exist_ok=True)
        self.wal = WAL(self.dir / "wal", self._segment_head, segment_size, unsafe_no_fsync)
        self._closed = False
        try:
            records = self.wal.open()
            self._replay(records)
            self.wal.start()
        except BaseException:
            self.wal.close()
            raise

    # --- writes (durable) --------------------------------------------------

    def save(
        self,
        hard_state: HardState | None,
        entries: Sequence[Entry],
        snapshot: Snapshot | None,
        sync: bool = True,
    ) -> None:
        """Persist one Ready: snapshot file, then one WAL batch, then one fsync if `sync`.

        The in-memory log is updated after the WAL batch is written, so a segment cut
        during the write starts with the state from before this Ready.
        """
        self._check_open()
        floor = self.snapshot().metadata.index
        last = self.last_index()
        if snapshot is not None:
            if snapshot.metadata.index <= floor:
                raise ErrSnapOutOfDate()
            floor = last = snapshot.metadata.index
        if entries and entries[0].index > last + 1:
            raise ErrUnavailable(f"missing log entry [last: {last}, append at: {entries[0].index}]")
        records: list[tuple[RecordType, RecordValue]] = []
        if snapshot is not None:
            self._write_snapshot_file(snapshot)
            records.append((RecordType.SNAPSHOT_INSTALLED, snapshot.metadata))
        records.extend((RecordType.ENTRY, e) for e in entries if e.index > floor)
        if hard_state is not None:
            records.append((RecordType.HARD_STATE, hard_state))
        self.wal.append(records)
        if snapshot is not None:
            MemoryStorage.apply_snapshot(self, snapshot)
        if entries:
            MemoryStorage.append(self, tuple(entries))
        if hard_state is not None:
            MemoryStorage.set_hard_state(self, hard_state)
        if sync:
            self.wal.sync()
            if snapshot is not None:
                self._release(snapshot.metadata)

    def sync(self) -> None:
        """fdatasync the WAL: everything saved so far is durable when this returns.

        May run in a worker thread while the caller waits; save nothing meanwhile.
        """
        self._check_open()
        self.wal.sync()

    def append(self, entries: list[Entry] | tuple[Entry, ...]) -> None:
        """Append entries durably (one WAL batch and fsync); prefer ``save`` once per Ready."""
        self.save(None, entries, None)

    def set_hard_state(self, hs: HardState) -> None:
        self.save(hs, (), None)

    def apply_snapshot(self, snap: Snapshot) -> None:
        """Install a snapshot from the leader durably (it replaces the whole log)."""
        self.save(None, (), snap)

    def create_snapshot(self, index: int, conf_state: ConfState, data: bytes) -> Snapshot:
        """Record (durably) a snapshot the application took at `index`, then release what it covers."""
        self._check_open()
        if index <= self.snapshot().metadata.index:
            raise ErrSnapOutOfDate()
        if index > self.last_index():
            raise ErrUnavailable()
        snap = Snapshot(SnapshotMetadata(index=index, term=self.term(index), conf_state=conf_state), data)
        self._write_snapshot_file(snap)
        self.wal.append([(RecordType.SNAPSHOT_TAKEN, snap.metadata)])
        self.wal.sync()
        MemoryStorage.create_snapshot(self, index, conf_state, data)
        self._release(snap.metadata)
        return self.snapshot()

    # compact() is MemoryStorage's: it trims memory only (see the module docstring).

    def close(self) -> None:
        """Sync what was saved, close the files and release the directory lock."""
        if self._closed:
            return
        try:
            self.wal.sync()
        finally:
            self.wal.close()
            self._closed = True

    def __enter__(self) -> DiskStorage:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- snapshot files ----------------------------------------------------

    def _write_snapshot_file(self, snap: Snapshot) -> None:
        path = self.snap_dir / snapshot_name(snap.metadata)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            data = memoryview(codec.frame(codec.encode_snapshot(snap)))
            while data:
                data = data[os.write(fd, data):]
            self.wal.fsync_file(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
        self.wal.fsync_dir(self.snap_dir)

    def _read_snapshot_file(self, meta: SnapshotMetadata) -> Snapshot:
        path = self.snap_dir / snapshot_name(meta)
        try:
            buf = path.read_bytes()
        except FileNotFoundError:
            raise CorruptRecord(f"{path}: snapshot file is missing") from None
        try:
            payload, end = codec.unframe(buf, 0)
            snap = codec.decode_snapshot(payload)
        except CorruptRecord as e:
            raise CorruptRecord(f"{path}: {e}") from None
        if end != len(buf):
            raise CorruptRecord(f"{path}: offset {end}: {len(buf) - end} stray bytes after the snapshot")
        if snap.metadata != meta:
            raise CorruptRecord(f"{path}: holds snapshot {snap.metadata}, the WAL names {meta}")
        return snap

    def _release(self, meta: SnapshotMetadata) -> None:
        """Once the snapshot at meta is durable (file and WAL marker): drop what it supersedes."""
        self.wal.release_to(meta.index)
        keep = snapshot_name(meta)
        removed = False
        for p in self.snap_dir.iterdir():
            m = _SNAP_NAME.match(p.name)
            if m and p.name != keep and int(m.group(2), 16) < meta.index:
                p.unlink()
                removed = True
        if removed:
            self.wal.fsync_dir(self.snap_dir)

    # --- recovery ----------------------------------------------------------

    def _segment_head(self) -> list[tuple[RecordType, RecordValue]]:
        """What every new WAL segment starts with, so older segments can be released."""
        return [(RecordType.HARD_STATE, self.hard_state), (RecordType.SNAPSHOT_BASE, self.snapshot().metadata)]

    def _replay(self, records: list[WalRecord]) -> None:
        for tmp in self.snap_dir.glob("*.tmp"):
            tmp.unlink()  # a snapshot whose writing a crash interrupted
        base, broken = self._load_base(records)
        floor = base.metadata.index
        if not base.is_empty:
            MemoryStorage.apply_snapshot(self, base)
        for r in records:
            if r.type is RecordType.ENTRY:
                assert isinstance(r.value, Entry)
                e = r.value
                if e.index <= floor:
                    # Covered by the snapshot, but appending it truncated everything after
                    # it: entries above the snapshot replayed so far were overwritten since.
                    if self.last_index() > floor:
                        self._reset_to(base)
                    continue
                if e.index > self.last_index() + 1:
                    raise CorruptRecord(
                        f"{r.segment}: offset {r.offset}: entry {e.index} leaves a gap after entry "
                        f"{self.last_index()}{broken}"
                    )
                MemoryStorage.append(self, (e,))  # an entry at or below last_index truncates first
            elif r.type is RecordType.HARD_STATE:
                assert isinstance(r.value, HardState)
                MemoryStorage.set_hard_state(self, r.value)
            elif r.type is RecordType.SNAPSHOT_INSTALLED:
                assert isinstance(r.value, SnapshotMetadata)
                if r.value.index > floor:
                    raise CorruptRecord(
                        f"{r.segment}: offset {r.offset}: installed snapshot at index {r.value.index} "
                        f"cannot be loaded{broken}"
                    )
                # Installing it replaced the log: entries written before this marker are gone.
                self._reset_to(base)
            # SEGMENT, SNAPSHOT_TAKEN and SNAPSHOT_BASE change nothing in the log itself.

    def _reset_to(self, base: Snapshot) -> None:
        """Back to the snapshot alone (entries above it dropped), keeping the hard state."""
        hs = self.hard_state
        MemoryStorage.__init__(self)
        if not base.is_empty:
            MemoryStorage.apply_snapshot(self, base)
        MemoryStorage.set_hard_state(self, hs)

    def _load_base(self, records: list[WalRecord]) -> tuple[Snapshot, str]:
        """The newest snapshot a WAL marker names whose file is valid, and a note on broken ones.

        A newer file that is broken is renamed ``*.broken`` (as etcd does) and an older
        snapshot is tried; replay then fails loudly if the WAL cannot bridge the gap.
        """
        markers: dict[int, SnapshotMetadata] = {}
        for r in records:
            if r.type in (RecordType.SNAPSHOT_INSTALLED, RecordType.SNAPSHOT_TAKEN, RecordType.SNAPSHOT_BASE):
                assert isinstance(r.value, SnapshotMetadata)
                if r.value.index > 0:
                    markers[r.value.index] = r.value
        problems: list[str] = []
        base = Snapshot()
        for index in sorted(markers, reverse=True):
            try:
                base = self._read_snapshot_file(markers[index])
                break
            except CorruptRecord as e:
                problems.append(str(e))
                path = self.snap_dir / snapshot_name(markers[index])
                if path.exists():
                    path.rename(path.with_name(path.name + ".broken"))
                log.error("%s; trying an older snapshot", e)
        # Files the WAL does not confirm (a crash between writing the file and the marker)
        # and files older than the base are not needed.
        for p in self.snap_dir.iterdir():
            if _SNAP_NAME.match(p.name) and p.name != snapshot_name(base.metadata):
                p.unlink()
        note = f" (snapshot files that could not be used: {'; '.join(problems)})" if problems else ""
        return base, note

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("DiskStorage is closed")

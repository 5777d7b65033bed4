"""The write-ahead log: Raft's persistent state as CRC-framed records in preallocated segment files.

Why it looks like this (etcd's ``wal`` package is the model; facts, not code):

* **Segments.** The log is a directory of files named ``<seq>-<index>.wal``
  (16 hex digits each, as etcd: the sequence number, then the index of the
  first entry expected in the file). A segment is preallocated to
  ``segment_size`` bytes (etcd: 64 MiB, ``SegmentSizeBytes``) so that appending
  does not change the file size and ``fdatasync`` need not write metadata.
  When a batch does not fit, the segment is *cut*: the old file is trimmed to
  what it holds and fsynced, and the new one is prepared under a temporary
  name (preallocated, header written and fsynced) before it is renamed into
  place, as etcd's file pipeline does. So every segment but the last is
  complete and durable, and only the last can end in a torn write.
* **Records.** Each record is ``kv.codec.frame(payload)``: length, CRC32,
  payload; the payload is one type byte and a ``kv.codec`` encoding. One
  record per entry, plus hard-state records and snapshot markers (etcd's
  entryType, stateType, snapshotType). A segment opens with a header record
  (format, sequence number) followed by the records ``head()`` supplies — the
  current hard state and snapshot — so older segments can be deleted without
  losing the latest hard state (etcd writes the hard state and a snapshot
  record at the start of each new segment for the same reason).
* **Group commit.** ``append`` writes a whole batch with one ``pwrite``;
  ``sync`` is one ``fdatasync``. The caller decides how often to sync (one per
  Raft Ready).
* **Recovery.** ``open`` reads every segment. A defect in a record of the last
  segment that looks like a crash mid-write — the file ends inside the record
  (short), or the record's CRC fails and either one of its 512-byte sectors is
  all zeros (a sector never reached the disk: etcd's torn-write check) or no
  valid record follows it — is cut off with a warning, and writing resumes
  there. Any other defect (a bad record with valid records after it, or
  anywhere in an older, completed segment, or in a segment's head, which is
  fsynced before the segment is renamed into place) raises ``CorruptRecord``
  naming the file and offset: a WAL never silently drops data it had
  acknowledged.
  One case cannot be told apart from a torn write by any format without a
  second copy: damage to the very last record of the log. It is cut like a
  torn tail; if it had been fsynced, that one record is lost.
* **Release.** After a snapshot at index *i* is durable, ``release_to(i)``
  deletes the segments, oldest first, that precede the last one and hold no
  entry above *i* (etcd's ``ReleaseLockTo`` followed by purging).

The bytes themselves (segment names, records, the torn-tail tests) are
``real_net.wal_format``. The WAL knows Raft's record kinds but not Raft's rules: replaying records into
a log (truncating conflicting suffixes, resetting at an installed snapshot) is
``real_net.disk_storage``'s job.
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
from collections.abc import Callable, Sequence
from pathlib import Path

from kv import codec
from kv.errors import CorruptRecord
from kv.raft.messages import Entry, SnapshotMetadata
from real_net.wal_format import (
    HEAD_RECORDS,
    SEGMENT_NAME,
    SEGMENT_SIZE,
    RecordType,
    RecordValue,
    Segment,
    WalLocked,
    WalRecord,
    decode_payload,
    encode_record,
    find_data_end,
    fsync_dir,
    has_zero_sector,
    preallocate,
    pwrite_all,
    segment_name,
    valid_record_after,
)

log = logging.getLogger(__name__)
_fdatasync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)

# --------------------------------------------------------------- the WAL


class WAL:
    """A directory of segment files. ``open()`` first (it reads and repairs), then ``append``/``sync``.

    `head` returns the records every new segment starts with after its header:
    a HARD_STATE record, then a SNAPSHOT_BASE record (the storage's current ones).
    Not thread-safe, except that ``sync`` may run in a worker thread while the
    caller waits for it (do not append meanwhile).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        head: Callable[[], Sequence[tuple[RecordType, RecordValue]]],
        segment_size: int = SEGMENT_SIZE,
        unsafe_no_fsync: bool = False,
    ) -> None:
        if segment_size < 4096:
            raise ValueError("segment_size must be at least 4096 bytes")
        self.dir = Path(directory)
        self.head = head
        self.segment_size = segment_size
        # etcd's --unsafe-no-fsync: every write still happens, none is forced to the disk.
        # For tests and benchmarks of everything but the disk; a crash can lose anything.
        self.unsafe_no_fsync = unsafe_no_fsync
        self.segments: list[Segment] = []
        self.last_index = 0  # index of the last entry written (names the next segment)
        self._fd: int | None = None  # the last segment, open for writing
        self._offset = 0  # where the next record goes in the last segment
        self._head_end = 0  # end of the last segment's head records
        self._synced_offset = 0
        self._lock_fd: int | None = None
        self._opened = False

    # --- opening -----------------------------------------------------------

    def open(self) -> list[WalRecord]:
        """Lock the directory, read every segment, cut a torn tail; return all records in order."""
        if self._opened:
            raise RuntimeError("WAL already open")
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock()
        self._opened = True
        for tmp in self.dir.glob("*.tmp"):
            tmp.unlink()  # a segment whose creation a crash interrupted: it was never in use
        found: list[Segment] = []
        for p in sorted(self.dir.iterdir()):
            m = SEGMENT_NAME.match(p.name)
            if m:
                found.append(Segment(int(m.group(1), 16), int(m.group(2), 16), p))
        for prev, seg in zip(found, found[1:]):
            if seg.seq != prev.seq + 1:
                raise CorruptRecord(f"{self.dir}: WAL segment {prev.seq + 1:016x} is missing (have {seg.path.name})")
        records: list[WalRecord] = []
        for i, seg in enumerate(found):
            is_last = i == len(found) - 1
            seg_records, end = self._scan(seg, is_last)
            for r in seg_records:
                if r.type is RecordType.ENTRY:
                    assert isinstance(r.value, Entry)
                    seg.max_entry_index = max(seg.max_entry_index, r.value.index)
                    self.last_index = r.value.index
                elif r.type is RecordType.SNAPSHOT_INSTALLED:
                    assert isinstance(r.value, SnapshotMetadata)
                    self.last_index = r.value.index
            records.extend(seg_records)
            self.segments.append(seg)
            if is_last:
                self._offset = self._synced_offset = end
                self._head_end = seg_records[HEAD_RECORDS].offset if len(seg_records) > HEAD_RECORDS else end
        return records

    def _scan(self, seg: Segment, is_last: bool) -> tuple[list[WalRecord], int]:
        buf = seg.path.read_bytes()
        data_end = find_data_end(buf)
        out: list[WalRecord] = []
        off = 0
        while off < data_end:
            problem: str
            short = False  # the file ends inside the record
            if len(buf) - off < codec.HEADER_SIZE:
                problem, short = "torn record header", True
            else:
                length = struct.unpack_from(">I", buf, off)[0]
                if length == 0:
                    problem = "zero-length record (space never written)"
                elif off + codec.HEADER_SIZE + length > len(buf):
                    problem, short = f"torn record: {length} bytes announced, the file ends first", True
                else:
                    try:
                        payload, nxt = codec.unframe(buf, off)
                    except CorruptRecord as e:
                        problem = str(e)
                    else:
                        out.append(self._decode(seg, out, payload, off))
                        off = nxt
                        continue
            where = f"{seg.path}: offset {off}"
            if len(out) < HEAD_RECORDS:
                # A segment's head is fsynced before the segment is renamed into place, so
                # damage there is never a torn write.
                raise CorruptRecord(f"{where}: damaged segment head: {problem}")
            if not is_last:
                raise CorruptRecord(f"{where}: {problem} (in a completed segment)")
            if not self._torn(buf, off, data_end, short):
                raise CorruptRecord(f"{where}: {problem}, and valid records follow it")
            log.warning("%s: %s: cutting the torn tail left by a crash", where, problem)
            self._cut_tail(seg.path, off)
            return out, off
        if len(out) < HEAD_RECORDS:
            raise CorruptRecord(f"{seg.path}: offset {off}: segment ends inside its head")
        return out, off

    @staticmethod
    def _decode(seg: Segment, out: list[WalRecord], payload: bytes, off: int) -> WalRecord:
        where = f"{seg.path}: offset {off}"
        try:
            rtype, value = decode_payload(payload)
        except CorruptRecord as e:
            # The CRC matched, so these are the bytes that were written: not a torn write.
            raise CorruptRecord(f"{where}: undecodable record: {e}") from None
        expected = (RecordType.SEGMENT, RecordType.HARD_STATE, RecordType.SNAPSHOT_BASE)
        if len(out) < HEAD_RECORDS and rtype is not expected[len(out)]:
            raise CorruptRecord(f"{where}: segment head has a {rtype.name} record where a "
                                f"{expected[len(out)].name} record belongs")
        if not out and value != seg.seq:
            raise CorruptRecord(f"{where}: segment header names sequence {value}, the file name {seg.seq}")
        if out and rtype is RecordType.SEGMENT:
            raise CorruptRecord(f"{where}: a second segment header")
        return WalRecord(rtype, value, seg.path, off)

    @staticmethod
    def _torn(buf: bytes, off: int, data_end: int, short: bool) -> bool:
        if not short:
            length = struct.unpack_from(">I", buf, off)[0]
            end = min(off + codec.HEADER_SIZE + max(length, 1), data_end)
            if has_zero_sector(buf, off, end):
                return True  # a sector of this record never reached the disk
        return valid_record_after(buf, off, data_end) is None

    def _cut_tail(self, path: Path, off: int) -> None:
        fd = os.open(path, os.O_RDWR)
        try:
            os.ftruncate(fd, off)
            preallocate(fd, self.segment_size)  # the cut-off bytes read as zeros again
            self.fsync_file(fd)
        finally:
            os.close(fd)

    def _lock(self) -> None:
        fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise WalLocked(f"raftkv: {self.dir} is in use by another process (or another open WAL)") from None
        self._lock_fd = fd

    # --- writing -----------------------------------------------------------

    def append(self, records: Sequence[tuple[RecordType, RecordValue]]) -> None:
        """Write records with one pwrite (after cutting a new segment if they do not fit). No fsync."""
        if not self._opened:
            raise RuntimeError("open() the WAL first")
        if not records:
            return
        data = b"".join(encode_record(t, v) for t, v in records)
        if self._fd is None:
            self._start()
        elif self._offset + len(data) > self.segment_size and self._offset > self._head_end:
            self._cut()
        assert self._fd is not None
        pwrite_all(self._fd, data, self._offset)
        self._offset += len(data)
        seg = self.segments[-1]
        for t, v in records:
            if t is RecordType.ENTRY:
                assert isinstance(v, Entry)
                seg.max_entry_index = max(seg.max_entry_index, v.index)
                self.last_index = v.index
            elif t is RecordType.SNAPSHOT_INSTALLED:
                assert isinstance(v, SnapshotMetadata)
                self.last_index = v.index

    def sync(self) -> None:
        """fdatasync the last segment: everything appended so far is durable when this returns."""
        if self._fd is not None and self._synced_offset != self._offset:
            if not self.unsafe_no_fsync:
                _fdatasync(self._fd)
            self._synced_offset = self._offset

    def start(self) -> None:
        """Open the last segment for appending, or create the first one (after ``open``)."""
        if self._fd is None:
            self._start()

    def _start(self) -> None:
        if self.segments:
            seg = self.segments[-1]
            self._fd = os.open(seg.path, os.O_RDWR)
            size = os.fstat(self._fd).st_size
            if size < self.segment_size:
                preallocate(self._fd, self.segment_size)
        else:
            self._create_segment(0)

    def _cut(self) -> None:
        assert self._fd is not None
        # Trim the preallocated space and make the finished segment durable before the
        # next one exists, so only the last segment can ever hold a torn write.
        os.ftruncate(self._fd, self._offset)
        self.fsync_file(self._fd)
        os.close(self._fd)
        self._fd = None
        self._create_segment(self.segments[-1].seq + 1)

    def _create_segment(self, seq: int) -> None:
        first_index = self.last_index + 1
        path = self.dir / segment_name(seq, first_index)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            preallocate(fd, self.segment_size)
            head = [(RecordType.SEGMENT, seq), *self.head()]
            if [t for t, _ in head] != [RecordType.SEGMENT, RecordType.HARD_STATE, RecordType.SNAPSHOT_BASE]:
                raise ValueError("head() must return a HARD_STATE record then a SNAPSHOT_BASE record")
            data = b"".join(encode_record(t, v) for t, v in head)
            pwrite_all(fd, data, 0)
            self.fsync_file(fd)
            os.rename(tmp, path)
            self.fsync_dir(self.dir)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._offset = self._synced_offset = self._head_end = len(data)
        self.segments.append(Segment(seq, first_index, path))

    # --- releasing ---------------------------------------------------------

    def release_to(self, index: int) -> list[Path]:
        """Delete the oldest segments that hold no entry above `index` (never the last one).

        Call only once a snapshot at `index` is durable, WAL marker included.
        """
        released: list[Path] = []
        while len(self.segments) > 1 and self.segments[0].max_entry_index <= index:
            seg = self.segments.pop(0)
            seg.path.unlink()
            released.append(seg.path)
        if released:
            self.fsync_dir(self.dir)
        return released

    def fsync_file(self, fd: int) -> None:
        """fsync (data and metadata), unless unsafe_no_fsync."""
        if not self.unsafe_no_fsync:
            os.fsync(fd)

    def fsync_dir(self, path: Path) -> None:
        """Make renames and unlinks in `path` durable, unless unsafe_no_fsync."""
        if not self.unsafe_no_fsync:
            fsync_dir(path)

    # --- inspection and closing -------------------------------------------

    def position(self) -> tuple[Path, int]:
        """The last segment and the offset where the next record will be written."""
        return self.segments[-1].path, self._offset

    def synced_offset(self) -> int:
        return self._synced_offset

    def close(self) -> None:
        """Close the files and release the lock. Does not sync: call ``sync`` first if you need to."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = None
        self._opened = False

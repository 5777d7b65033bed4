"""The WAL's on-disk format: segment names, record framing and types, and the file helpers
that tell a torn tail from corruption. real_net/wal.py (the log itself) explains the
design; this module is what a reader of the bytes needs.
"""

from __future__ import annotations

import enum
import os
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from kv import codec
from kv.errors import CorruptRecord, GrpcCode, RaftKVError
from kv.raft.messages import Entry, HardState, Snapshot, SnapshotMetadata

SEGMENT_SIZE = 64 * 1024 * 1024  # etcd's wal.SegmentSizeBytes
SECTOR_SIZE = 512  # the unit a disk writes atomically (etcd's minSectorSize)
_MAGIC = b"RKVW"
_WAL_FORMAT = 1
_HEADER_BODY = struct.Struct(">4sHQ")  # magic, WAL format, segment sequence number
SEGMENT_NAME = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.wal$")


class WalLocked(RaftKVError):
    """Another process (or another open WAL in this one) holds the directory's lock."""

    message = "raftkv: the data directory is in use by another process"
    grpc_code = GrpcCode.FAILED_PRECONDITION


class RecordType(enum.IntEnum):
    SEGMENT = 1  # first record of every segment: magic, format, sequence number
    ENTRY = 2  # one log entry
    HARD_STATE = 3  # term, vote, commit
    SNAPSHOT_INSTALLED = 4  # a snapshot from the leader replaced the whole log here
    SNAPSHOT_TAKEN = 5  # the member snapshotted its own state at this index; the log goes on
    SNAPSHOT_BASE = 6  # in a segment's head: the snapshot in force when the segment was cut


HEAD_RECORDS = 3  # SEGMENT, HARD_STATE, SNAPSHOT_BASE: how every segment starts
SNAPSHOT_MARKERS = frozenset({RecordType.SNAPSHOT_INSTALLED, RecordType.SNAPSHOT_TAKEN, RecordType.SNAPSHOT_BASE})

RecordValue = Entry | HardState | SnapshotMetadata | int


@dataclass(frozen=True, slots=True)
class WalRecord:
    """One decoded record and where it was read from (for error messages)."""

    type: RecordType
    value: RecordValue  # Entry, HardState, SnapshotMetadata (markers) or the sequence number (SEGMENT)
    segment: Path
    offset: int


@dataclass(slots=True)
class Segment:
    seq: int
    first_index: int  # from the name: the index of the first entry expected in it
    path: Path
    max_entry_index: int = 0  # highest entry index recorded in it (0: none); decides release


def segment_name(seq: int, first_index: int) -> str:
    return f"{seq:016x}-{first_index:016x}.wal"


# --------------------------------------------------------------- records


def encode_record(rtype: RecordType, value: RecordValue) -> bytes:
    """The framed bytes of one record."""
    if rtype is RecordType.SEGMENT:
        assert isinstance(value, int)
        body = _HEADER_BODY.pack(_MAGIC, _WAL_FORMAT, value)
    elif rtype is RecordType.ENTRY:
        assert isinstance(value, Entry)
        body = codec.encode_entry(value)
    elif rtype is RecordType.HARD_STATE:
        assert isinstance(value, HardState)
        body = codec.encode_hard_state(value)
    else:
        assert isinstance(value, SnapshotMetadata)
        # A marker names the snapshot; its data lives in the snapshot file (etcd's walpb.Snapshot).
        body = codec.encode_snapshot(Snapshot(metadata=value))
    return codec.frame(bytes((rtype,)) + body)


def decode_payload(payload: bytes) -> tuple[RecordType, RecordValue]:
    """Decode an unframed payload; CorruptRecord (without a location) if it is not a WAL record."""
    if not payload:
        raise CorruptRecord("empty record")
    try:
        rtype = RecordType(payload[0])
    except ValueError:
        raise CorruptRecord(f"unknown record type {payload[0]}") from None
    body = payload[1:]
    if rtype is RecordType.SEGMENT:
        if len(body) != _HEADER_BODY.size:
            raise CorruptRecord("malformed segment header")
        magic, fmt, seq = _HEADER_BODY.unpack(body)
        if magic != _MAGIC:
            raise CorruptRecord(f"not a raftkv WAL segment (magic {magic!r})")
        if fmt != _WAL_FORMAT:
            raise CorruptRecord(f"unsupported WAL format {fmt} (this build reads {_WAL_FORMAT})")
        return rtype, int(seq)
    if rtype is RecordType.ENTRY:
        return rtype, codec.decode_entry(body)
    if rtype is RecordType.HARD_STATE:
        return rtype, codec.decode_hard_state(body)
    return rtype, codec.decode_snapshot(body).metadata


# --------------------------------------------------------------- files


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in `path` durable (the directory entry is data too)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def preallocate(fd: int, size: int) -> None:
    try:
        os.posix_fallocate(fd, 0, size)
    except (AttributeError, OSError):
        pass  # a file system without fallocate: the file grows as it is written, still correct


def pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


def find_data_end(buf: bytes) -> int:
    """Offset just past the last non-zero byte (preallocated space reads as zeros)."""
    end = len(buf)
    step = 1 << 16
    while end > 0:
        start = max(0, end - step)
        stripped = buf[start:end].rstrip(b"\0")
        if stripped:
            return start + len(stripped)
        end = start
    return 0


def has_zero_sector(buf: bytes, start: int, end: int) -> bool:
    """Whether an aligned SECTOR_SIZE block meeting [start, end) is all zeros: a sector never written."""
    zeros = bytes(SECTOR_SIZE)
    for s in range(start - start % SECTOR_SIZE, end, SECTOR_SIZE):
        if buf[s : s + SECTOR_SIZE] == zeros:
            return True
    return False


def _valid_record_at(buf: bytes, p: int) -> bool:
    if len(buf) - p < codec.HEADER_SIZE:
        return False
    length, crc = struct.unpack_from(">II", buf, p)
    start = p + codec.HEADER_SIZE
    if length == 0 or start + length > len(buf):
        return False
    if zlib.crc32(memoryview(buf)[start : start + length]) != crc:
        return False
    try:
        decode_payload(buf[start : start + length])
    except CorruptRecord:
        return False
    return True


def valid_record_after(buf: bytes, start: int, limit: int) -> int | None:
    """The offset of the first valid record starting in (start, limit), if any.

    Lengths are big-endian and records are far smaller than 16 MiB, so a record
    can only start where a zero byte is: jump between those.
    """
    p = start + 1
    while p < limit:
        p = buf.find(b"\0", p, limit)
        if p < 0:
            return None
        if _valid_record_at(buf, p):
            return p
        p += 1
    return None

"""A snapshot file as ``etcdctl snapshot save`` writes it: its digest, its status, its state.

Why: ``raftkv snapshot status`` and ``raftkv snapshot restore`` read the same
files etcdctl reads (one taken from a real etcd 3.4, or from raftkv, whose
Snapshot streams etcd's format), and must judge them as etcdctl does.
Facts from etcd 3.4's clientv3/snapshot/v3_snapshot.go and
etcdctl/ctlv3/command/printer*.go:

* **The digest.** What the Snapshot RPC streams is the bbolt file followed by
  the sha256 of that file. A bbolt file is whole pages (multiples of 512
  bytes), so a file whose size is 32 more than a multiple of 512 carries a
  digest; restore checks it, and refuses a file without one unless
  ``--skip-hash-check`` (a db file copied out of a data dir has none).
* **The status.** ``snapshot status`` does not check the digest: it opens the
  file with bbolt (which ignores trailing bytes), runs bbolt's consistency
  check, and reports a CRC-32C (Castagnoli) over every bucket name and every
  key and value of each bucket in bbolt's order; the revision of the last key
  in the ``key`` bucket; the number of keys over all buckets; and the size
  bbolt's transaction reports (pages in use times page size), printed with
  go-humanize's SI units.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kv.errors import CorruptRecord
from real_net import bbolt, etcd_db

DIGEST_SIZE = 32  # sha256
WRITE_OUT = ("simple", "table", "json")


@dataclass(frozen=True, slots=True)
class SnapshotFile:
    """A snapshot file split into its bbolt database and its digest (None: no trailer)."""

    db: bytes
    digest: bytes | None

    @classmethod
    def parse(cls, data: bytes) -> SnapshotFile:
        if len(data) % 512 == DIGEST_SIZE:
            return cls(data[:-DIGEST_SIZE], data[-DIGEST_SIZE:])
        return cls(data, None)

    def verify(self, skip_hash_check: bool = False) -> None:
        """etcdctl restore's check: the digest must be there and match, unless skipped."""
        if skip_hash_check:
            return
        if self.digest is None:
            raise CorruptRecord("snapshot missing hash but --skip-hash-check=false")
        actual = hashlib.sha256(self.db).digest()
        if actual != self.digest:
            raise CorruptRecord(
                f"expected sha256 {self.digest.hex()}, got {actual.hex()} "
                "(the file is damaged, or was cut short or extended)"
            )

    def database(self) -> bbolt.Database:
        """The bbolt database, with bbolt's consistency check."""
        return read_bolt(self.db)

    def state(self) -> etcd_db.BackendState:
        """What the backend holds, in etcd 3.4's schema."""
        return etcd_db.from_buckets(self.database().buckets)


def read_bolt(data: bytes) -> bbolt.Database:
    try:
        return bbolt.read_db(data, check=True)
    except bbolt.BoltError as e:
        raise CorruptRecord(f"snapshot file integrity check failed: {e}") from None
    except (IndexError, ValueError) as e:  # struct.error is a ValueError: a page cut short
        raise CorruptRecord(f"snapshot file integrity check failed: unreadable page ({e})") from None


# --------------------------------------------------------------------- status


@dataclass(frozen=True, slots=True)
class Status:
    """etcd's snapshot.Status."""

    hash: int
    revision: int
    total_key: int
    total_size: int


def status(data: bytes) -> Status:
    """``etcdctl snapshot status`` of a file's bytes (digest trailer or not)."""
    db = read_bolt(data)
    revision = 0
    keys = db.buckets.get(etcd_db.KEY, {})
    if keys:
        revision, _, _ = etcd_db.parse_revision_key(max(keys).ljust(17, b"\x00"))
    total = sum(len(bucket) for bucket in db.buckets.values())
    return Status(backend_hash(db.buckets), revision, total, db.meta.pgid * db.meta.page_size)


# etcd's backend.DefaultIgnores: the consistent index differs between members that
# hold the same data (it counts their own log), so Maintenance.Hash leaves it out.
HASH_IGNORES = frozenset({(etcd_db.META, etcd_db.CONSISTENT_INDEX)})


def backend_hash(buckets: Mapping[bytes, Mapping[bytes, Any]], ignore: frozenset[tuple[bytes, bytes]] = frozenset()) -> int:
    """CRC-32C over every bucket name and each of its keys and values, in bbolt's byte
    order, leaving out the (bucket, key) pairs in `ignore`: what ``etcdctl snapshot
    status`` prints (no ignores) and what etcd's Maintenance.Hash answers (backend.Hash
    with HASH_IGNORES). A nested bucket's value counts as nothing, as bbolt's ForEach
    gives nil for it."""
    crc = 0
    for name in sorted(buckets):
        crc = crc32c(name, crc)
        bucket = buckets[name]
        for key in sorted(bucket):
            if (name, key) in ignore:
                continue
            crc = crc32c(key, crc)
            value = bucket[key]
            if isinstance(value, bytes):
                crc = crc32c(value, crc)
    return crc


def state_hash(state: etcd_db.BackendState) -> int:
    """Maintenance.Hash of a member's state: etcd's hash of the backend it would hold."""
    return backend_hash(etcd_db.buckets(state), HASH_IGNORES)


def format_status(st: Status, write_out: str) -> str:
    """etcdctl's rendering of a snapshot status for -w simple, table or json (one
    trailing newline included)."""
    if write_out == "json":
        body = {"hash": st.hash, "revision": st.revision, "totalKey": st.total_key, "totalSize": st.total_size}
        return json.dumps(body, separators=(",", ":")) + "\n"
    row = [f"{st.hash:x}", str(st.revision), str(st.total_key), humanize_bytes(st.total_size)]
    if write_out == "simple":
        return ", ".join(row) + "\n"
    if write_out == "table":
        return table(["hash", "revision", "total keys", "total size"], [row])
    raise ValueError(f"write-out must be one of {', '.join(WRITE_OUT)}, got {write_out!r}")


def humanize_bytes(n: int) -> str:
    """go-humanize's Bytes: SI units (powers of 1000), one decimal below 10."""
    if n < 10:
        return f"{n} B"
    sizes = ["B", "kB", "MB", "GB", "TB", "PB", "EB"]
    e = min(int(math.floor(math.log(n) / math.log(1000))), len(sizes) - 1)
    val = math.floor(n / 1000**e * 10 + 0.5) / 10
    return f"{val:.1f} {sizes[e]}" if val < 10 else f"{val:.0f} {sizes[e]}"


def table(header: list[str], rows: list[list[str]]) -> str:
    """The table etcdctl draws (olekukonko/tablewriter with ALIGN_RIGHT): headers upper-
    cased and centred (the odd space on the right), cells right-aligned, one space of
    padding, ``+---+`` rules above and below the header and at the end."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def centred(text: str, w: int) -> str:
        left = (w - len(text)) // 2
        return " " * left + text + " " * (w - len(text) - left)

    lines = [rule, "| " + " | ".join(centred(h.upper(), w) for h, w in zip(header, widths)) + " |", rule]
    for r in rows:
        lines.append("| " + " | ".join(c.rjust(w) for c, w in zip(r, widths)) + " |")
    lines.append(rule)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------- crc32c


def _crc32c_table() -> tuple[int, ...]:
    poly = 0x82F63B78  # Castagnoli, reversed
    out = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        out.append(c)
    return tuple(out)


_CRC32C = _crc32c_table()


def crc32c(data: bytes, crc: int = 0) -> int:
    """CRC-32C (Castagnoli) of `data`, continuing from `crc` (Go's crc32.Update with
    crc32.MakeTable(crc32.Castagnoli)); a plain table-driven loop."""
    t = _CRC32C
    c = crc ^ 0xFFFFFFFF
    for b in data:
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF

"""bbolt's file format: write a whole database in one go, and read one back.

Why: etcd's backend is a bbolt file, and what ``Maintenance.Snapshot``
streams is that file byte for byte. ``etcdctl snapshot status`` opens it with
bbolt (and runs bbolt's consistency check, ``Tx.Check``), ``snapshot
restore`` copies it into a new data dir that etcd opens read-write. So
raftkv must produce a file that bbolt itself accepts, not something like it.

The writer builds a fresh database the way a compacted one looks (no free
pages, every page reachable exactly once); the reader parses any bbolt file
with 4 KiB or other page sizes, and can run the same reachability check as
``Tx.Check``, which is what the tests use to hold the writer to bbolt's rules.

Facts used (etcd-io/bbolt page.go, db.go, bucket.go, node.go, freelist.go,
tx.go; bbolt v1.3, what etcd 3.4 links):

* All integers are little-endian (native on amd64/arm64, which bbolt assumes).
* Page header, 16 bytes: ``id u64, flags u16, count u16, overflow u32``.
  Flags: branch 0x01, leaf 0x02, meta 0x04, freelist 0x10. A page that needs
  more than one page of space takes ``overflow`` more contiguous pages.
* Leaf element, 16 bytes: ``flags u32, pos u32, ksize u32, vsize u32``;
  branch element, 16 bytes: ``pos u32, ksize u32, pgid u64``. ``pos`` is the
  offset of the key from the element itself; a leaf's value follows its key.
  Elements come first, then the keys and values in element order.
* A leaf element with flag 0x01 (bucketLeafFlag) is a nested bucket; its
  value starts with the bucket header ``root pgid u64, sequence u64``. Root 0
  means *inline*: the bucket's one leaf page follows the header inside the
  value. bbolt inlines a bucket when it has no nested buckets and page header
  + its elements, keys and values fit in a quarter page (``inlineable``).
* Pages 0 and 1 are meta pages: after the page header, ``magic u32
  (0xED0CDAED), version u32 (2), page_size u32, flags u32, root bucket
  header (16 bytes), freelist pgid u64, pgid u64 (high water mark: pages in
  use), txid u64, checksum u64``, the checksum being FNV-1a 64 of the meta up
  to the checksum field. bbolt reads the valid meta with the higher txid.
* A freelist page lists free page ids after its header; ``count`` 0xFFFF
  means the real count is the first u64. A fresh file has none. A meta whose
  freelist is 0xFFFF_FFFF_FFFF_FFFF stores none (``NoFreelistSync``, as etcd
  opens its backend): bbolt then takes every unreachable page as free.
* ``Tx.Check``: every page below the high water mark is either free or
  reachable (metas, the freelist and its overflow, every bucket's pages and
  their overflow), none is reachable twice, and reachable pages are branch or
  leaf pages. bbolt keeps keys sorted within and across a bucket's pages, and a
  branch element's key is the first key of its child.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TypeVar, Union

MAGIC = 0xED0CDAED
VERSION = 2
DEFAULT_PAGE_SIZE = 4096

BRANCH_PAGE = 0x01
LEAF_PAGE = 0x02
META_PAGE = 0x04
FREELIST_PAGE = 0x10
BUCKET_LEAF = 0x01  # leaf element flag: the value is a nested bucket

# bbolt's limits (bolt.MaxKeySize, MaxValueSize).
MAX_KEY_SIZE = 32768
MAX_VALUE_SIZE = (1 << 31) - 2

PAGE_HEADER = struct.Struct("<QHHI")  # id, flags, count, overflow
LEAF_ELEMENT = struct.Struct("<IIII")  # flags, pos, ksize, vsize
BRANCH_ELEMENT = struct.Struct("<IIQ")  # pos, ksize, pgid
BUCKET_HEADER = struct.Struct("<QQ")  # root pgid, sequence
# magic, version, page_size, flags, root (root pgid, sequence), freelist, pgid, txid
META = struct.Struct("<IIIIQQQQQ")
CHECKSUM = struct.Struct("<Q")

_FREELIST_COUNT_OVERFLOW = 0xFFFF
# meta.freelist when the freelist is not stored (bbolt's pgidNoFreelist, written under
# Options.NoFreelistSync, which etcd sets): every page not reachable is free.
NO_FREELIST = 0xFFFFFFFFFFFFFFFF

T = TypeVar("T")

# A bucket: keys to values, where a value that is itself a mapping is a nested bucket.
Bucket = Mapping[bytes, Union[bytes, "Bucket"]]


class BoltError(Exception):
    """Bytes that are not a bbolt database this module can read, or contents bbolt
    would refuse to store (an empty or oversized key, an oversized value)."""


def fnv1a_64(data: bytes) -> int:
    """FNV-1a, 64 bits (Go's hash/fnv New64a), the meta page checksum."""
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


# ------------------------------------------------------------------- writing


def write_db(buckets: Mapping[bytes, Bucket], page_size: int = DEFAULT_PAGE_SIZE) -> bytes:
    """A complete bbolt database file holding `buckets` (the top level holds only
    buckets, as bbolt's root bucket does). Keys are written in byte order whatever
    order the mappings have. The file is ``pgid * page_size`` bytes: both meta pages,
    an empty freelist, then the pages of every bucket."""
    if page_size < 1024 or page_size & (page_size - 1):
        raise ValueError("page_size must be a power of two of at least 1024")
    w = _Writer(page_size)
    for name, b in buckets.items():
        if not isinstance(b, Mapping):
            raise BoltError(f"top-level value {name!r} is not a bucket (bbolt's root holds only buckets)")
    # The root bucket is never inline: the meta page can only point at a page.
    root = w.tree(w.elements(buckets))
    freelist = PAGE_HEADER.pack(2, FREELIST_PAGE, 0, 0).ljust(page_size, b"\x00")
    pgid = w.next_pgid
    metas = b"".join(_meta_page(i, page_size, root, 2, pgid, txid=i) for i in (0, 1))
    out = metas + freelist + b"".join(w.pages)
    assert len(out) == pgid * page_size
    return out


def _meta_page(page_id: int, page_size: int, root: int, freelist: int, pgid: int, txid: int) -> bytes:
    meta = META.pack(MAGIC, VERSION, page_size, 0, root, 0, freelist, pgid, txid)
    body = meta + CHECKSUM.pack(fnv1a_64(meta))
    return (PAGE_HEADER.pack(page_id, META_PAGE, 0, 0) + body).ljust(page_size, b"\x00")


@dataclass(slots=True)
class _Writer:
    page_size: int
    pages: list[bytes] = field(default_factory=list)
    next_pgid: int = 3  # 0 and 1: metas, 2: the freelist

    def elements(self, bucket: Bucket) -> list[tuple[int, bytes, bytes]]:
        """(flags, key, value) in key order; nested buckets are written first (their
        pages are allocated before the parent's, which needs their root page ids)."""
        out: list[tuple[int, bytes, bytes]] = []
        for key in sorted(bucket):
            if not key:
                raise BoltError("bbolt refuses an empty key")
            if len(key) > MAX_KEY_SIZE:
                raise BoltError(f"key of {len(key)} bytes exceeds bbolt's {MAX_KEY_SIZE}")
            value = bucket[key]
            if isinstance(value, Mapping):
                out.append((BUCKET_LEAF, key, self.bucket_value(value)))
            else:
                if len(value) > MAX_VALUE_SIZE:
                    raise BoltError(f"value of {len(value)} bytes exceeds bbolt's {MAX_VALUE_SIZE}")
                out.append((0, key, bytes(value)))
        return out

    def bucket_value(self, bucket: Bucket) -> bytes:
        """The value a parent stores for a nested bucket: its header, plus its leaf page
        when bbolt would inline it (no nested buckets, at most a quarter page)."""
        elems = self.elements(bucket)
        size = PAGE_HEADER.size + sum(LEAF_ELEMENT.size + len(k) + len(v) for _, k, v in elems)
        if size <= self.page_size // 4 and not any(f & BUCKET_LEAF for f, _, _ in elems):
            return BUCKET_HEADER.pack(0, 0) + _leaf_image(elems, 0, size)
        return BUCKET_HEADER.pack(self.tree(elems), 0)

    def tree(self, elems: list[tuple[int, bytes, bytes]]) -> int:
        """Write a B+tree of leaf pages (and branch pages above them) holding `elems`;
        the root's page id. An empty tree is one empty leaf page."""
        groups = _pack(elems, lambda e: LEAF_ELEMENT.size + len(e[1]) + len(e[2]), self.page_size, 1)
        level = [(g[0][1] if g else b"", self.leaf(g)) for g in groups]
        while len(level) > 1:
            # A branch needs two children (bbolt's minKeysPerPage for branches).
            groups_b = _pack(level, lambda c: BRANCH_ELEMENT.size + len(c[0]), self.page_size, 2)
            level = [(g[0][0], self.branch(g)) for g in groups_b]
        return level[0][1]

    def alloc(self, image: bytes) -> int:
        pgid = self.next_pgid
        self.pages.append(struct.pack("<Q", pgid) + image[8:])
        self.next_pgid += len(image) // self.page_size
        return pgid

    def leaf(self, elems: list[tuple[int, bytes, bytes]]) -> int:
        size = PAGE_HEADER.size + sum(LEAF_ELEMENT.size + len(k) + len(v) for _, k, v in elems)
        return self.alloc(_leaf_image(elems, self.page_size, size))

    def branch(self, children: list[tuple[bytes, int]]) -> int:
        n = len(children)
        size = PAGE_HEADER.size + sum(BRANCH_ELEMENT.size + len(k) for k, _ in children)
        pages = -(-size // self.page_size)
        head = bytearray(PAGE_HEADER.pack(0, BRANCH_PAGE, n, pages - 1))
        data = bytearray()
        for i, (key, child) in enumerate(children):
            at = PAGE_HEADER.size + i * BRANCH_ELEMENT.size
            pos = PAGE_HEADER.size + n * BRANCH_ELEMENT.size + len(data) - at
            head += BRANCH_ELEMENT.pack(pos, len(key), child)
            data += key
        return self.alloc(bytes(head + data).ljust(pages * self.page_size, b"\x00"))


def _leaf_image(elems: list[tuple[int, bytes, bytes]], page_size: int, size: int) -> bytes:
    """A leaf page; padded to whole pages unless page_size is 0 (an inline bucket's
    page, which is exactly as long as its contents)."""
    n = len(elems)
    pages = -(-size // page_size) if page_size else 1
    head = bytearray(PAGE_HEADER.pack(0, LEAF_PAGE, n, pages - 1 if page_size else 0))
    data = bytearray()
    for i, (flags, key, value) in enumerate(elems):
        at = PAGE_HEADER.size + i * LEAF_ELEMENT.size
        pos = PAGE_HEADER.size + n * LEAF_ELEMENT.size + len(data) - at
        head += LEAF_ELEMENT.pack(flags, pos, len(key), len(value))
        data += key
        data += value
    image = bytes(head + data)
    return image.ljust(pages * page_size, b"\x00") if page_size else image


def _pack(items: list[T], size_of: Callable[[T], int], page_size: int, minimum: int) -> list[list[T]]:
    """Split `items` into consecutive groups that each fit one page where possible
    (a single item larger than a page gets a group, hence a page with overflow, of
    its own), with at least `minimum` items per group when there are that many."""
    groups: list[list[T]] = [[]]
    used = PAGE_HEADER.size
    for item in items:
        s = size_of(item)
        if groups[-1] and used + s > page_size and len(groups[-1]) >= minimum:
            groups.append([])
            used = PAGE_HEADER.size
        groups[-1].append(item)
        used += s
    if len(groups) > 1 and len(groups[-1]) < minimum:
        # Borrow from the previous group, which has at least `minimum` + 1 only if it
        # was cut for size; otherwise merge (the page then overflows, still valid).
        prev = groups[-2]
        if len(prev) > minimum:
            groups[-1].insert(0, prev.pop())
        else:
            groups[-2:] = [prev + groups[-1]]
    return groups


# ------------------------------------------------------------------- reading


@dataclass(frozen=True, slots=True)
class Meta:
    page_size: int
    root: int
    freelist: int
    pgid: int
    txid: int


@dataclass(slots=True)
class Database:
    """A parsed bbolt file: its meta and its buckets as nested dicts (a nested bucket
    is a dict, a value is bytes)."""

    meta: Meta
    buckets: dict[bytes, dict[bytes, object]]
    free: list[int]


def read_db(data: bytes, check: bool = True) -> Database:
    """Parse a whole bbolt file. With `check`, also verify what bbolt's ``Tx.Check``
    verifies (every page free or reachable exactly once, reachable pages are branch
    or leaf pages) plus key order and branch keys; raises BoltError on the first problem."""
    meta = _read_meta(data)
    r = _Reader(data, meta, check)
    r.claim(0, 0)
    r.claim(1, 0)
    stored_free = r.freelist() if meta.freelist != NO_FREELIST else None
    root = r.bucket(meta.root, None)
    free = stored_free if stored_free is not None else set(range(2, meta.pgid)) - r.reachable
    if check:
        for pgid in free:
            if pgid in r.reachable:
                raise BoltError(f"page {pgid}: reachable freed")
        for pgid in range(meta.pgid):
            if pgid not in r.reachable and pgid not in free:
                raise BoltError(f"page {pgid}: unreachable unfreed")
    buckets: dict[bytes, dict[bytes, object]] = {}
    for name, value in root.items():
        if not isinstance(value, dict):
            raise BoltError(f"root holds a plain key {name!r}, not a bucket")
        buckets[name] = value
    return Database(meta, buckets, sorted(free))


def _read_meta(data: bytes) -> Meta:
    """The valid meta page with the higher txid (bbolt's db.meta()). The page size is
    read from meta 0 first, as bbolt does, falling back to meta 1's offset guess."""
    candidates: list[Meta] = []
    errors: list[str] = []
    offsets = [0]
    if len(data) >= PAGE_HEADER.size + META.size:
        ps0 = struct.unpack_from("<I", data, PAGE_HEADER.size + 8)[0]
        offsets.append(ps0 if ps0 >= 1024 else DEFAULT_PAGE_SIZE)
    for i, off in enumerate(offsets):
        at = off + PAGE_HEADER.size
        if len(data) < at + META.size + CHECKSUM.size:
            errors.append(f"meta {i}: file too short")
            continue
        magic, version, page_size, _, root, _, freelist, pgid, txid = META.unpack_from(data, at)
        (checksum,) = CHECKSUM.unpack_from(data, at + META.size)
        if magic != MAGIC:
            errors.append(f"meta {i}: invalid magic {magic:#x}")
        elif version != VERSION:
            errors.append(f"meta {i}: version {version}, not {VERSION}")
        elif checksum != fnv1a_64(data[at : at + META.size]):
            errors.append(f"meta {i}: checksum mismatch")
        elif page_size < 1024 or len(data) < pgid * page_size:
            errors.append(f"meta {i}: {pgid} pages of {page_size} bytes do not fit a {len(data)}-byte file")
        else:
            candidates.append(Meta(page_size, root, freelist, pgid, txid))
    if not candidates:
        raise BoltError("not a bbolt database: " + "; ".join(errors))
    return max(candidates, key=lambda m: m.txid)


@dataclass(slots=True)
class _Reader:
    data: bytes
    meta: Meta
    check: bool
    reachable: set[int] = field(default_factory=set)

    def claim(self, pgid: int, overflow: int) -> None:
        for p in range(pgid, pgid + overflow + 1):
            if self.check and p in self.reachable:
                raise BoltError(f"page {p}: multiple references")
            if self.check and p >= self.meta.pgid:
                raise BoltError(f"page {p}: out of bounds: {self.meta.pgid}")
            self.reachable.add(p)

    def page(self, pgid: int) -> tuple[int, int, int, int]:
        """(offset, flags, count, overflow) of page `pgid`, after checking its id."""
        off = pgid * self.meta.page_size
        if off + PAGE_HEADER.size > len(self.data):
            raise BoltError(f"page {pgid}: beyond the end of the file")
        pid, flags, count, overflow = PAGE_HEADER.unpack_from(self.data, off)
        if pid != pgid:
            raise BoltError(f"page {pgid}: identifies itself as {pid}")
        return off, flags, count, overflow

    def freelist(self) -> set[int]:
        off, flags, count, overflow = self.page(self.meta.freelist)
        if flags != FREELIST_PAGE:
            raise BoltError(f"page {self.meta.freelist}: {flags:#x} is not a freelist page")
        self.claim(self.meta.freelist, overflow)
        start = off + PAGE_HEADER.size
        if count == _FREELIST_COUNT_OVERFLOW:
            (count,) = struct.unpack_from("<Q", self.data, start)
            start += 8
        ids = struct.unpack_from(f"<{count}Q", self.data, start)
        free = set(ids)
        if self.check and len(free) != len(ids):
            raise BoltError("freelist: a page is freed twice")
        return free

    def bucket(self, root: int, inline: bytes | None) -> dict[bytes, object]:
        out: dict[bytes, object] = {}
        for flags, key, value in self.walk(root, inline):
            if flags & BUCKET_LEAF:
                child_root, _ = BUCKET_HEADER.unpack_from(value, 0)
                out[key] = self.bucket(child_root, value[BUCKET_HEADER.size :] if child_root == 0 else None)
            else:
                out[key] = value
        if self.check:
            keys = list(out)
            if any(a >= b for a, b in zip(keys, keys[1:])):
                raise BoltError(f"bucket rooted at page {root}: keys out of order")
        return out

    def walk(self, pgid: int, inline: bytes | None) -> Iterator[tuple[int, bytes, bytes]]:
        """The (flags, key, value) leaf elements under page `pgid` in order, or those of
        an inline bucket's page."""
        if inline is not None:
            buf, off = inline, 0
            _, flags, count, _ = PAGE_HEADER.unpack_from(inline, 0)
        else:
            buf = self.data
            off, flags, count, overflow = self.page(pgid)
            self.claim(pgid, overflow)
        if flags == LEAF_PAGE:
            for i in range(count):
                at = off + PAGE_HEADER.size + i * LEAF_ELEMENT.size
                eflags, pos, ksize, vsize = LEAF_ELEMENT.unpack_from(buf, at)
                k = buf[at + pos : at + pos + ksize]
                yield eflags, bytes(k), bytes(buf[at + pos + ksize : at + pos + ksize + vsize])
        elif flags == BRANCH_PAGE and inline is None:
            for i in range(count):
                at = off + PAGE_HEADER.size + i * BRANCH_ELEMENT.size
                pos, ksize, child = BRANCH_ELEMENT.unpack_from(buf, at)
                key = bytes(buf[at + pos : at + pos + ksize])
                first = None
                for elem in self.walk(child, None):
                    if first is None:
                        first = elem[1]
                        if self.check and first != key:
                            raise BoltError(f"page {pgid}: branch key {key!r} is not its child's first key {first!r}")
                    yield elem
        else:
            raise BoltError(f"page {pgid}: invalid type {flags:#x} in a bucket")

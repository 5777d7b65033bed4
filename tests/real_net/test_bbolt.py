"""real_net/bbolt.py writes files that bbolt itself reads back exactly, and reads them too.

Two readers judge the writer: our own (``read_db`` with bbolt's Tx.Check rules)
and bbolt's, through ``etcdctl snapshot status``: it opens the file with bbolt,
runs ``Tx.Check`` (any error fails the command), and hashes every top-level
bucket's name, keys and values with CRC-32C in bbolt's order, which the test
computes independently from what it asked the writer to store.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from real_net import bbolt

from .api.support import require_binary

# ----------------------------------------------------------------- strategies

keys = st.binary(min_size=1, max_size=40).filter(lambda k: k != b"key")  # "key" is etcd's revision bucket
small_values = st.binary(max_size=80)
# Values past a page (overflow pages) and around the inline limit, as runs of one byte
# so hypothesis need not draw every byte.
sized_values = st.builds(lambda n, b: bytes([b]) * n, st.integers(0, 20_000), st.integers(0, 255))
values = st.one_of(small_values, small_values, sized_values)


def many_keys(n: int, width: int) -> dict[bytes, Any]:
    """n sorted-looking keys with values of assorted lengths: enough to need branch pages."""
    return {struct.pack(">Q", i * 7919) + b"/k": bytes([i % 251]) * ((i * width) % 700) for i in range(n)}


buckets = st.recursive(
    st.dictionaries(keys, values, max_size=12),
    lambda inner: st.dictionaries(keys, st.one_of(values, inner), max_size=6),
    max_leaves=30,
)
wide = st.builds(many_keys, st.integers(0, 1500), st.integers(1, 97))
databases = st.dictionaries(keys, st.one_of(buckets, wide), max_size=6)


def plain(b: Mapping[bytes, Any]) -> dict[bytes, Any]:
    return {k: plain(v) if isinstance(v, Mapping) else bytes(v) for k, v in b.items()}


# ------------------------------------------------------------------ own reader


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(databases, st.sampled_from([1024, 4096]))
def test_what_is_written_reads_back_identically_and_passes_tx_check(db: dict[bytes, Any], page_size: int) -> None:
    data = bbolt.write_db(db, page_size=page_size)
    parsed = bbolt.read_db(data, check=True)  # raises on any Tx.Check violation
    assert parsed.buckets == plain(db)
    assert parsed.meta.page_size == page_size
    assert len(data) == parsed.meta.pgid * page_size
    assert parsed.free == []  # a fresh file: every page in use


def _root_entries(data: bytes) -> dict[bytes, tuple[int, bytes]]:
    """The root bucket's (flags, value) per name, straight from the root leaf page."""
    meta = bbolt.read_db(data).meta
    off = meta.root * meta.page_size
    _, flags, count, _ = bbolt.PAGE_HEADER.unpack_from(data, off)
    assert flags == bbolt.LEAF_PAGE
    out = {}
    for i in range(count):
        at = off + bbolt.PAGE_HEADER.size + i * bbolt.LEAF_ELEMENT.size
        eflags, pos, ksize, vsize = bbolt.LEAF_ELEMENT.unpack_from(data, at)
        out[data[at + pos : at + pos + ksize]] = (eflags, data[at + pos + ksize : at + pos + ksize + vsize])
    return out


def test_buckets_are_inline_exactly_when_bbolt_would_inline_them() -> None:
    # bbolt's Bucket.inlineable: no nested bucket, and page header + elements + keys +
    # values within a quarter page (1024 bytes with 4 KiB pages).
    fits = {b"k": b"v" * (1024 - 16 - 16 - 1)}
    too_big = {b"k": b"v" * (1024 - 16 - 16)}
    data = bbolt.write_db({b"empty": {}, b"fits": fits, b"too_big": too_big, b"parent": {b"child": {}}})
    roots = {name: bbolt.BUCKET_HEADER.unpack_from(v, 0)[0] for name, (_, v) in _root_entries(data).items()}
    assert roots[b"empty"] == 0 and roots[b"fits"] == 0
    assert roots[b"too_big"] != 0 and roots[b"parent"] != 0
    assert all(flags == bbolt.BUCKET_LEAF for flags, _ in _root_entries(data).values())
    assert bbolt.read_db(data).buckets[b"parent"] == {b"child": {}}


def test_a_value_larger_than_a_page_sits_on_overflow_pages() -> None:
    data = bbolt.write_db({b"b": {b"big": b"x" * 10_000}})
    meta = bbolt.read_db(data).meta
    # metas, freelist, root leaf, and the bucket's leaf of 3 pages (header + 10 KB).
    assert meta.pgid == 3 + 1 + 3
    leaf = bbolt.BUCKET_HEADER.unpack_from(_root_entries(data)[b"b"][1], 0)[0]
    assert bbolt.PAGE_HEADER.unpack_from(data, leaf * 4096)[3] == 2  # overflow


def test_a_corrupt_meta_is_refused_but_the_other_meta_still_opens_the_file() -> None:
    data = bytearray(bbolt.write_db({b"b": {b"k": b"v"}}))
    data[16 + 20] ^= 0xFF  # inside meta 0's root pgid: its checksum no longer matches
    assert bbolt.read_db(bytes(data)).buckets == {b"b": {b"k": b"v"}}  # meta 1 is intact
    data[4096 + 16 + 20] ^= 0xFF
    with pytest.raises(bbolt.BoltError, match="checksum"):
        bbolt.read_db(bytes(data))


def test_the_writer_refuses_what_bbolt_refuses() -> None:
    with pytest.raises(bbolt.BoltError, match="empty key"):
        bbolt.write_db({b"b": {b"": b"v"}})
    with pytest.raises(bbolt.BoltError, match="only buckets"):
        bbolt.write_db({b"b": b"not a bucket"})  # type: ignore[dict-item]


# ------------------------------------------------------------- bbolt's reader


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C = _crc32c_table()


def crc32c(chunks: list[bytes]) -> int:
    c = 0xFFFFFFFF
    for chunk in chunks:
        for b in chunk:
            c = _CRC32C[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def status_hash(db: Mapping[bytes, Mapping[bytes, Any]]) -> tuple[int, int]:
    """(hash, total keys) as etcdctl's snapshot status computes them: for each top-level
    bucket in order its name, then each key and value (nil for a nested bucket)."""
    chunks: list[bytes] = []
    total = 0
    for name in sorted(db):
        chunks.append(name)
        for k in sorted(db[name]):
            v = db[name][k]
            chunks += [k, b"" if isinstance(v, Mapping) else v]
            total += 1
    return crc32c(chunks), total


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(databases)
def test_bbolt_itself_opens_checks_and_reads_every_file_written(db: dict[bytes, Any]) -> None:
    etcdctl = require_binary("etcdctl")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "db"
        path.write_bytes(bbolt.write_db(db))
        r = subprocess.run(
            [etcdctl, "snapshot", "status", str(path), "-w", "json"],
            capture_output=True, text=True, timeout=20, env={**os.environ, "ETCDCTL_API": "3"},
        )  # fmt: skip
    assert r.returncode == 0, r.stderr
    status = json.loads(r.stdout)
    want_hash, want_total = status_hash(db)
    assert (status["hash"], status["totalKey"]) == (want_hash, want_total)
    assert status["totalSize"] == len(bbolt.write_db(db))


def test_bbolt_reads_a_tree_three_levels_deep() -> None:
    # ~600 leaves need ~4 branch pages under a root branch page (4 KiB pages).
    db = {b"wide": {struct.pack(">Q", i) + b"_": bytes([i % 256]) * 100 for i in range(20_000)}}
    data = bbolt.write_db(db)
    root_leaf = bbolt.BUCKET_HEADER.unpack_from(_root_entries(data)[b"wide"][1], 0)[0]
    off = root_leaf * 4096
    _, flags, count, _ = bbolt.PAGE_HEADER.unpack_from(data, off)
    assert flags == bbolt.BRANCH_PAGE and count >= 2
    child = bbolt.BRANCH_ELEMENT.unpack_from(data, off + bbolt.PAGE_HEADER.size)[2]
    assert bbolt.PAGE_HEADER.unpack_from(data, child * 4096)[1] == bbolt.BRANCH_PAGE
    assert bbolt.read_db(data).buckets == db
    etcdctl = require_binary("etcdctl")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "db"
        path.write_bytes(data)
        r = subprocess.run([etcdctl, "snapshot", "status", str(path), "-w", "json"], capture_output=True,
                           text=True, timeout=20, env={**os.environ, "ETCDCTL_API": "3"})  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["totalKey"] == 20_000  # Tx.Check passed, and every key was visited

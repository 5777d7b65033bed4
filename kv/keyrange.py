"""etcd's key ranges: a request names keys as ``key`` plus ``range_end``.

``range_end`` empty means the key alone; ``b"\\0"`` means every key from ``key``
on; anything else the half-open interval [key, range_end). A prefix is the
range up to ``prefix_range_end(prefix)``.
"""

from __future__ import annotations


def in_range(k: bytes, key: bytes, range_end: bytes) -> bool:
    """Is `k` in etcd's range (key, range_end)? b"" = key alone, b"\\0" = every key >= key."""
    if not range_end:
        return k == key
    if range_end == b"\x00":
        return k >= key
    return key <= k < range_end


def prefix_range_end(prefix: bytes) -> bytes:
    """The range_end that makes [prefix, range_end) every key starting with `prefix`
    (etcd's clientv3.GetPrefixRangeEnd); b"\\0" (all keys) when no such end exists."""
    p = bytearray(prefix)
    while p:
        if p[-1] < 0xFF:
            p[-1] += 1
            return bytes(p)
        p.pop()
    return b"\x00"

"""Versioned binary encoding of Raft messages, entries, hard state, snapshots and conf changes.

One format for the wire (real_net's peer frames) and the disk (WAL records):
msgpack arrays with a leading format version, so a reader can refuse what it
does not understand instead of misreading it. WAL records add a CRC32 over
the payload. Bad bytes raise ``CorruptRecord``, never an IndexError or a
msgpack exception, because bytes from a peer or a disk are not the caller's
fault (STYLE.md, h11's local/remote split).
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

import msgpack

from kv.errors import CorruptRecord
from kv.raft.messages import (
    ConfChange,
    ConfChangeSingle,
    ConfChangeTransition,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    Snapshot,
    SnapshotMetadata,
)

FORMAT_VERSION = 1


# --- plain values <-> lists ------------------------------------------------


def _entry_to(e: Entry) -> list[Any]:
    return [e.term, e.index, int(e.type), e.data]


def _entry_from(v: Any) -> Entry:
    term, index, typ, data = v
    return Entry(term=term, index=index, type=EntryType(typ), data=bytes(data))


def _conf_state_to(cs: ConfState) -> list[Any]:
    return [list(cs.voters), list(cs.learners), list(cs.voters_outgoing), list(cs.learners_next), cs.auto_leave]


def _conf_state_from(v: Any) -> ConfState:
    voters, learners, outgoing, learners_next, auto_leave = v
    return ConfState(tuple(voters), tuple(learners), tuple(outgoing), tuple(learners_next), bool(auto_leave))


def _snapshot_to(s: Snapshot) -> list[Any]:
    m = s.metadata
    return [m.index, m.term, _conf_state_to(m.conf_state), s.data]


def _snapshot_from(v: Any) -> Snapshot:
    index, term, cs, data = v
    return Snapshot(SnapshotMetadata(index=index, term=term, conf_state=_conf_state_from(cs)), bytes(data))


def _message_to(m: Message) -> list[Any]:
    return [
        int(m.type), m.to, m.from_, m.term, m.log_term, m.index,
        [_entry_to(e) for e in m.entries], m.commit,
        None if m.snapshot is None else _snapshot_to(m.snapshot),
        m.reject, m.reject_hint, m.context,
    ]


def _message_from(v: Any) -> Message:
    (typ, to, frm, term, log_term, index, ents, commit, snap, reject, reject_hint, context) = v
    return Message(
        type=MessageType(typ), to=to, from_=frm, term=term, log_term=log_term, index=index,
        entries=tuple(_entry_from(e) for e in ents), commit=commit,
        snapshot=None if snap is None else _snapshot_from(snap),
        reject=bool(reject), reject_hint=reject_hint, context=bytes(context),
    )


# --- versioned envelopes ---------------------------------------------------


def _pack(kind: str, body: Any) -> bytes:
    packed: bytes = msgpack.packb([FORMAT_VERSION, kind, body], use_bin_type=True)
    return packed


def _unpack(data: bytes, kind: str) -> Any:
    try:
        version, got_kind, body = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as e:  # msgpack raises many types for garbage; all mean the same here
        raise CorruptRecord(f"cannot decode {kind}: {type(e).__name__}: {e}") from None
    if version != FORMAT_VERSION:
        raise CorruptRecord(f"unsupported {kind} format version {version!r} (this build reads {FORMAT_VERSION})")
    if got_kind != kind:
        raise CorruptRecord(f"expected a {kind} record, got {got_kind!r}")
    return body


def _decode(data: bytes, kind: str, build: Any) -> Any:
    body = _unpack(data, kind)
    try:
        return build(body)
    except CorruptRecord:
        raise
    except Exception as e:
        raise CorruptRecord(f"malformed {kind}: {type(e).__name__}: {e}") from None


def encode_message(m: Message) -> bytes:
    return _pack("msg", _message_to(m))


def decode_message(data: bytes) -> Message:
    m: Message = _decode(data, "msg", _message_from)
    return m


def encode_entry(e: Entry) -> bytes:
    return _pack("ent", _entry_to(e))


def decode_entry(data: bytes) -> Entry:
    e: Entry = _decode(data, "ent", _entry_from)
    return e


def encode_hard_state(hs: HardState) -> bytes:
    return _pack("hs", [hs.term, hs.vote, hs.commit])


def decode_hard_state(data: bytes) -> HardState:
    hs: HardState = _decode(data, "hs", lambda v: HardState(term=v[0], vote=v[1], commit=v[2]))
    return hs


def encode_snapshot(s: Snapshot) -> bytes:
    return _pack("snap", _snapshot_to(s))


def decode_snapshot(data: bytes) -> Snapshot:
    s: Snapshot = _decode(data, "snap", _snapshot_from)
    return s


def encode_conf_change(cc: ConfChange) -> bytes:
    return _pack("cc", [[[int(c.type), c.node_id] for c in cc.changes], int(cc.transition), cc.context])


def decode_conf_change(data: bytes) -> ConfChange:
    def build(v: Any) -> ConfChange:
        changes, transition, context = v
        return ConfChange(
            changes=tuple(ConfChangeSingle(ConfChangeType(t), n) for t, n in changes),
            transition=ConfChangeTransition(transition),
            context=bytes(context),
        )

    cc: ConfChange = _decode(data, "cc", build)
    return cc


# --- WAL / frame records: length + CRC32 + payload ---------------------------

_HEADER = struct.Struct(">II")  # payload length, crc32(payload)
HEADER_SIZE = _HEADER.size


def frame(payload: bytes) -> bytes:
    """A self-checking record: 4-byte length, 4-byte CRC32 of the payload, the payload."""
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def unframe(buf: bytes, offset: int = 0) -> tuple[bytes, int]:
    """Read one record at offset; returns (payload, next offset). CorruptRecord on a bad CRC or a torn tail."""
    if len(buf) - offset < HEADER_SIZE:
        raise CorruptRecord(f"torn record header at offset {offset}")
    length, crc = _HEADER.unpack_from(buf, offset)
    start = offset + HEADER_SIZE
    end = start + length
    if end > len(buf):
        raise CorruptRecord(f"torn record at offset {offset}: {length} bytes announced, {len(buf) - start} present")
    payload = bytes(buf[start:end])
    if zlib.crc32(payload) != crc:
        raise CorruptRecord(f"CRC mismatch in record at offset {offset}")
    return payload, end


# --- kv.api values (requests and responses inside log entries and snapshots) -

_REGISTRY: dict[str, type] = {}


def _registry() -> dict[str, type]:
    """Every dataclass and enum of kv.api, by name (built once, lazily: kv.api imports nothing of ours)."""
    if not _REGISTRY:
        import dataclasses
        import enum as _enum

        from kv import api

        for name in dir(api):
            obj = getattr(api, name)
            if isinstance(obj, type) and obj.__module__ == api.__name__ and (
                dataclasses.is_dataclass(obj) or issubclass(obj, _enum.Enum)
            ):
                _REGISTRY[obj.__name__] = obj
    return _REGISTRY


def _to_plain(v: Any) -> Any:
    import dataclasses
    import enum as _enum

    if v is None or isinstance(v, (bool, int, float, str, bytes)) and not isinstance(v, _enum.Enum):
        return v
    if isinstance(v, _enum.Enum):
        return {"e": type(v).__name__, "v": v.value}
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {"d": type(v).__name__, "f": [_to_plain(getattr(v, f.name)) for f in dataclasses.fields(v)]}
    if isinstance(v, (tuple, list)):
        return [_to_plain(x) for x in v]
    if isinstance(v, (frozenset, set)):
        return {"s": sorted(_to_plain(x) for x in v)}
    raise TypeError(f"cannot encode {type(v).__name__}")


def _from_plain(v: Any) -> Any:
    # Hot in the simulator (every member decodes every entry): type() tests, and
    # scalars returned without a call.
    t = type(v)
    if t is list:
        return tuple([x if type(x) not in _CONTAINERS else _from_plain(x) for x in v])
    if t is dict:
        reg = _REGISTRY or _registry()
        if "d" in v:
            return reg[v["d"]](*[x if type(x) not in _CONTAINERS else _from_plain(x) for x in v["f"]])
        if "e" in v:
            return reg[v["e"]](v["v"])
        if "s" in v:
            return frozenset(_from_plain(x) for x in v["s"])
    return v


_CONTAINERS = (list, dict)


def encode_api(value: Any) -> bytes:
    """Encode a kv.api request/response (any nesting of its dataclasses, enums, tuples, bytes)."""
    return _pack("api", _to_plain(value))


def decode_api(data: bytes) -> Any:
    return _decode(data, "api", _from_plain)

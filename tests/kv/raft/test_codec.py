"""kv.codec for Raft values: lossless round trips, and bad bytes only ever raise CorruptRecord.

Bytes from a peer or a disk are not the caller's fault (STYLE.md, h11's split):
whatever garbage arrives, a decoder either returns a value of the kind it
decodes or raises ``CorruptRecord`` — never IndexError, TypeError or a msgpack
exception. Integrity (catching a flipped bit that still parses) is the job of
``frame``/``unframe``'s CRC.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

import kv.raft  # noqa: F401,I001  (must precede kv.codec: the two import each other)
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kv.codec import (
    FORMAT_VERSION,
    HEADER_SIZE,
    decode_conf_change,
    decode_entry,
    decode_hard_state,
    decode_message,
    decode_snapshot,
    encode_conf_change,
    encode_entry,
    encode_hard_state,
    encode_message,
    encode_snapshot,
    frame,
    unframe,
)
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

u64 = st.integers(0, 2**64 - 1)
small = st.integers(0, 2**31)
node_ids = st.lists(st.integers(1, 2**63), max_size=5).map(tuple)

entries = st.builds(Entry, term=u64, index=u64, type=st.sampled_from(EntryType), data=st.binary(max_size=64))
hard_states = st.builds(HardState, term=u64, vote=u64, commit=u64)
conf_states = st.builds(
    ConfState,
    voters=node_ids,
    learners=node_ids,
    voters_outgoing=node_ids,
    learners_next=node_ids,
    auto_leave=st.booleans(),
)
snapshots = st.builds(
    Snapshot,
    metadata=st.builds(SnapshotMetadata, index=u64, term=u64, conf_state=conf_states),
    data=st.binary(max_size=128),
)
conf_changes = st.builds(
    ConfChange,
    changes=st.lists(
        st.builds(ConfChangeSingle, type=st.sampled_from(ConfChangeType), node_id=st.integers(1, 2**63)), max_size=4
    ).map(tuple),
    transition=st.sampled_from(ConfChangeTransition),
    context=st.binary(max_size=32),
)
messages = st.builds(
    Message,
    type=st.sampled_from(MessageType),
    to=u64,
    from_=u64,
    term=u64,
    log_term=u64,
    index=u64,
    entries=st.lists(entries, max_size=4).map(tuple),
    commit=u64,
    snapshot=st.none() | snapshots,
    reject=st.booleans(),
    reject_hint=u64,
    context=st.binary(max_size=32),
)

Codec = tuple[str, Any, Callable[[Any], bytes], Callable[[bytes], Any], type]
CODECS: list[Codec] = [
    ("message", messages, encode_message, decode_message, Message),
    ("entry", entries, encode_entry, decode_entry, Entry),
    ("hard_state", hard_states, encode_hard_state, decode_hard_state, HardState),
    ("snapshot", snapshots, encode_snapshot, decode_snapshot, Snapshot),
    ("conf_change", conf_changes, encode_conf_change, decode_conf_change, ConfChange),
]
IDS = [c[0] for c in CODECS]


@st.composite
def encoded(draw: st.DrawFn, codec: Codec) -> tuple[Any, bytes]:
    _, values, encode, _, _ = codec
    v = draw(values)
    return v, encode(v)


def _decodes_or_corrupt(decode: Callable[[bytes], Any], cls: type, data: bytes) -> None:
    """The codec's contract for untrusted bytes: a value of the right class, or CorruptRecord."""
    try:
        v = decode(data)
    except CorruptRecord:
        return
    assert isinstance(v, cls)


@pytest.mark.parametrize("codec", CODECS, ids=IDS)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_decode_inverts_encode(codec: Codec, data: st.DataObject) -> None:
    _, _, _, decode, _ = codec
    value, raw = data.draw(encoded(codec))
    assert decode(raw) == value


@pytest.mark.parametrize("codec", CODECS, ids=IDS)
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_encoding_is_deterministic(codec: Codec, data: st.DataObject) -> None:
    _, _, encode, decode, _ = codec
    value, raw = data.draw(encoded(codec))
    assert encode(decode(raw)) == raw


@pytest.mark.parametrize("codec", CODECS, ids=IDS)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_every_strict_prefix_raises_corrupt_record(codec: Codec, data: st.DataObject) -> None:
    _, _, _, decode, _ = codec
    _, raw = data.draw(encoded(codec))
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(CorruptRecord):
        decode(raw[:cut])


@pytest.mark.parametrize("codec", CODECS, ids=IDS)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_trailing_bytes_raise_corrupt_record(codec: Codec, data: st.DataObject) -> None:
    _, _, _, decode, _ = codec
    _, raw = data.draw(encoded(codec))
    with pytest.raises(CorruptRecord):
        decode(raw + data.draw(st.binary(min_size=1, max_size=8)))


@pytest.mark.parametrize("codec", CODECS, ids=IDS)
@settings(max_examples=200, deadline=None)
@given(garbage=st.binary(max_size=200))
def test_garbage_decodes_to_the_right_kind_or_raises_corrupt_record(codec: Codec, garbage: bytes) -> None:
    _, _, _, decode, cls = codec
    _decodes_or_corrupt(decode, cls, garbage)


@pytest.mark.parametrize("codec", CODECS, ids=IDS)
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_bit_flipped_record_decodes_to_the_right_kind_or_raises_corrupt_record(
    codec: Codec, data: st.DataObject
) -> None:
    _, _, _, decode, cls = codec
    _, raw = data.draw(encoded(codec))
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    flipped = bytearray(raw)
    flipped[bit // 8] ^= 1 << (bit % 8)
    _decodes_or_corrupt(decode, cls, bytes(flipped))


@pytest.mark.parametrize("codec", CODECS, ids=IDS)
def test_a_record_of_another_kind_raises_corrupt_record(codec: Codec) -> None:
    name, _, _, decode, _ = codec
    other = encode_entry(Entry(term=1, index=1)) if name != "entry" else encode_hard_state(HardState())
    with pytest.raises(CorruptRecord, match="expected a"):
        decode(other)


def test_a_future_format_version_is_refused_not_misread() -> None:
    import msgpack

    body = [1, 2, 0, b""]
    raw = msgpack.packb([FORMAT_VERSION + 1, "ent", body], use_bin_type=True)
    with pytest.raises(CorruptRecord, match=f"unsupported ent format version {FORMAT_VERSION + 1}"):
        decode_entry(raw)


def test_an_unknown_message_type_raises_corrupt_record() -> None:
    raw = bytearray(encode_message(Message(type=MessageType.APP, to=2, from_=1, term=3)))
    # The type is the first field of the body: [version, "msg", [type, ...]].
    pos = raw.index(bytes([0x9C, int(MessageType.APP)]))  # fixarray of 12 fields, then the type
    raw[pos + 1] = 0x7F  # 127: no such MessageType
    with pytest.raises(CorruptRecord, match="malformed msg"):
        decode_message(bytes(raw))


# --- frame / unframe: length + CRC32 + payload ------------------------------------


@settings(max_examples=200, deadline=None)
@given(payloads=st.lists(st.binary(max_size=100), max_size=6))
def test_frames_concatenate_and_unframe_back_in_order(payloads: list[bytes]) -> None:
    buf = b"".join(frame(p) for p in payloads)
    out, offset = [], 0
    while offset < len(buf):
        p, offset = unframe(buf, offset)
        out.append(p)
    assert out == payloads and offset == len(buf)


def test_frame_layout_is_length_then_crc32_then_payload() -> None:
    f = frame(b"raft")
    assert len(f) == HEADER_SIZE + 4
    assert f[:4] == (4).to_bytes(4, "big")
    assert f[4:8] == zlib.crc32(b"raft").to_bytes(4, "big")
    assert f[8:] == b"raft"


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_single_bit_flip_in_a_frame_is_detected(data: st.DataObject) -> None:
    payload = data.draw(st.binary(min_size=0, max_size=100))
    f = bytearray(frame(payload))
    bit = data.draw(st.integers(0, len(f) * 8 - 1))
    f[bit // 8] ^= 1 << (bit % 8)
    try:
        got, end = unframe(bytes(f))
    except CorruptRecord:
        return
    # A flip in the length field that shortens the record can only "succeed" if the CRC
    # of the shorter payload happens to match; it must never return the original bytes.
    assert bit < 32 and (got, end) != (payload, len(f))


@settings(max_examples=200, deadline=None)
@given(payload=st.binary(max_size=100), data=st.data())
def test_a_torn_frame_raises_corrupt_record(payload: bytes, data: st.DataObject) -> None:
    f = frame(payload)
    cut = data.draw(st.integers(0, len(f) - 1))
    with pytest.raises(CorruptRecord, match="torn"):
        unframe(f[:cut])


def test_a_wal_of_encoded_records_round_trips_through_frames() -> None:
    hs = HardState(term=3, vote=2, commit=7)
    ents = [Entry(term=3, index=i, data=f"v{i}".encode()) for i in range(5, 8)]
    wal = frame(encode_hard_state(hs)) + b"".join(frame(encode_entry(e)) for e in ents)
    p, off = unframe(wal)
    assert decode_hard_state(p) == hs
    got = []
    while off < len(wal):
        p, off = unframe(wal, off)
        got.append(decode_entry(p))
    assert got == ents

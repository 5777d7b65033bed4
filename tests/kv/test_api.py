"""kv.api: etcd's numeric enum values, shape checks, codec round trips, header filling."""

from __future__ import annotations

import pytest

import kv.raft  # noqa: F401,I001  (must precede kv.codec: the two import each other)
from kv import api
from kv.api import (
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    Event,
    EventType,
    KeyValue,
    PutRequest,
    PutResponse,
    RangeRequest,
    RequestOp,
    ResponseHeader,
    SortOrder,
    SortTarget,
    TxnRequest,
    WatchCreateRequest,
    WatchFilterType,
    WatchResponse,
    fill_header,
)
from kv.codec import decode_api, encode_api


def test_enums_carry_etcds_wire_values() -> None:
    assert [int(x) for x in SortOrder] == [0, 1, 2]
    assert [x.name for x in SortTarget] == ["KEY", "VERSION", "CREATE", "MOD", "VALUE"]
    assert (CompareResult.EQUAL, CompareResult.GREATER, CompareResult.LESS, CompareResult.NOT_EQUAL) == (0, 1, 2, 3)
    assert (CompareTarget.VERSION, CompareTarget.CREATE, CompareTarget.MOD, CompareTarget.VALUE,
            CompareTarget.LEASE) == (0, 1, 2, 3, 4)
    assert (EventType.PUT, EventType.DELETE) == (0, 1)
    assert (WatchFilterType.NOPUT, WatchFilterType.NODELETE) == (0, 1)


def test_str_keys_are_a_programming_error() -> None:
    with pytest.raises(TypeError, match="PutRequest.key must be bytes"):
        PutRequest(key="k")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        RangeRequest(key=b"a", range_end="b")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        WatchCreateRequest(key="k")  # type: ignore[arg-type]


def test_request_op_is_a_one_of() -> None:
    with pytest.raises(ValueError, match="one-of"):
        RequestOp(request_put=PutRequest(key=b"a"), request_range=RangeRequest(key=b"a"))
    op = RequestOp(request_delete_range=DeleteRangeRequest(key=b"a"))
    assert op.request == DeleteRangeRequest(key=b"a")
    assert RequestOp().request is None


def test_txn_lists_must_be_tuples_so_values_stay_immutable() -> None:
    with pytest.raises(TypeError):
        TxnRequest(success=[RequestOp()])  # type: ignore[arg-type]


def test_values_are_frozen_and_hashable() -> None:
    kv = KeyValue(b"k", 2, 3, 1, b"v", 0)
    with pytest.raises(AttributeError):
        kv.value = b"x"  # type: ignore[misc]
    assert hash(kv) == hash(KeyValue(b"k", 2, 3, 1, b"v", 0))


@pytest.mark.parametrize(
    "value",
    [
        TxnRequest(
            compare=(Compare(result=CompareResult.LESS, target=CompareTarget.MOD, key=b"k", mod_revision=9),),
            success=(RequestOp(request_put=PutRequest(key=b"k", value=b"\x00\xff", lease=3, prev_kv=True)),),
            failure=(RequestOp(request_txn=TxnRequest(success=(RequestOp(request_range=RangeRequest(
                key=b"a", range_end=b"\x00", sort_order=SortOrder.DESCEND, sort_target=SortTarget.MOD)),))),),
        ),
        WatchResponse(
            header=ResponseHeader(1, 2, 3, 4), watch_id=5,
            events=(Event(EventType.DELETE, KeyValue(b"k", mod_revision=3), KeyValue(b"k", 2, 2, 1, b"v")),),
        ),
        WatchCreateRequest(key=b"a", filters=(WatchFilterType.NODELETE,), prev_kv=True),
        api.LeaseTimeToLiveResponse(ID=1, TTL=-1, keys=(b"a", b"b")),
        api.StatusResponse(db_size=10, errors=("x",)),
        api.MemberAddResponse(member=api.Member(ID=1, peer_urls=("http://a",)), members=()),
        api.Proposal(incarnation=1, seq=2, request=PutRequest(key=b"k")),
    ],
)
def test_every_value_round_trips_through_the_codec(value: object) -> None:
    assert decode_api(encode_api(value)) == value


def test_fill_header_keeps_the_store_revision_and_adds_identity() -> None:
    base = ResponseHeader(cluster_id=1, member_id=2, revision=10, raft_term=3)
    assert fill_header(PutResponse(header=ResponseHeader(revision=7)), base).header == ResponseHeader(1, 2, 7, 3)
    assert fill_header(api.LeaseRevokeResponse(), base).header == base

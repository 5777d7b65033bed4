"""real_net.convert: every kv.api value survives protobuf and back, and the table names every field.

The strategies are derived from the conversion table and the proto descriptors
(int64 / uint64 / uint32 ranges, bytes, strings, enums, nested messages), so a
field added to either side without a table row fails ``test_table_names_every_field``
and a row with the wrong kind fails the round trips.
"""

from __future__ import annotations

import dataclasses
import enum
import typing
from typing import Any

import pytest
from google.protobuf.descriptor import FieldDescriptor
from hypothesis import given, settings
from hypothesis import strategies as st

from kv import api
from real_net import convert
from real_net.proto import kv_pb2, rpc_pb2

TABLE = convert.table()
PB_TO_API = {pb_type: api_type for api_type, (pb_type, _) in TABLE.items()}

_INT_RANGES = {
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
}
_SMALL_BYTES = st.binary(max_size=12)
_TEXT = st.text(max_size=12)


def _pb_field(pb_type: type, name: str) -> FieldDescriptor:
    fd: FieldDescriptor = pb_type.DESCRIPTOR.fields_by_name[name]  # type: ignore[attr-defined]
    return fd


def _is_repeated(fd: FieldDescriptor) -> bool:
    return bool(fd.label == FieldDescriptor.LABEL_REPEATED) if hasattr(fd, "label") else fd.is_repeated


def _scalar(fd: FieldDescriptor, hint: Any) -> st.SearchStrategy[Any]:
    if fd.type in _INT_RANGES:
        lo, hi = _INT_RANGES[fd.type]
        return st.integers(lo, hi)
    if fd.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return _SMALL_BYTES
    if fd.type == FieldDescriptor.TYPE_STRING:
        return _TEXT
    if fd.type == FieldDescriptor.TYPE_ENUM:
        assert isinstance(hint, type) and issubclass(hint, enum.IntEnum), hint
        return st.sampled_from(list(hint))
    raise AssertionError(f"no strategy for {fd.full_name}")


def values(api_type: type, depth: int = 2) -> st.SearchStrategy[Any]:
    """Any value of a kv.api type that the wire can carry (see the module docstring)."""
    if api_type is api.Compare:
        return _compares()
    if api_type in (api.RequestOp, api.ResponseOp):
        return _one_of(api_type, depth)
    pb_type, names = TABLE[api_type]
    hints = typing.get_type_hints(api_type)
    parts: dict[str, st.SearchStrategy[Any]] = {}
    for api_name, pb_name in names.items():
        fd = _pb_field(pb_type, pb_name)
        hint = hints[api_name]
        if fd.type == FieldDescriptor.TYPE_MESSAGE:
            inner = PB_TO_API[fd.message_type._concrete_class]  # type: ignore[union-attr]
            if inner in (api.TxnRequest, api.TxnResponse, api.RequestOp, api.ResponseOp) and depth <= 0:
                sub: st.SearchStrategy[Any] = st.nothing()
            else:
                sub = st.deferred(lambda inner=inner: values(inner, depth - 1))
            if _is_repeated(fd):
                parts[api_name] = st.lists(sub, max_size=2).map(tuple) if depth > 0 else st.just(())
            elif api_name == "header":
                parts[api_name] = sub
            else:
                parts[api_name] = st.none() | sub
        elif _is_repeated(fd):
            elem = typing.get_args(hint)[0]
            parts[api_name] = st.lists(_scalar(fd, elem), max_size=3).map(tuple)
        else:
            parts[api_name] = _scalar(fd, hint)
    return st.builds(api_type, **parts)


def _one_of(api_type: type, depth: int) -> st.SearchStrategy[Any]:
    pb_type, names = TABLE[api_type]
    arms = []
    for api_name, pb_name in names.items():
        inner = PB_TO_API[_pb_field(pb_type, pb_name).message_type._concrete_class]  # type: ignore[union-attr]
        if inner in (api.TxnRequest, api.TxnResponse) and depth <= 0:
            continue
        arms.append(values(inner, depth - 1).map(lambda v, n=api_name: api_type(**{n: v})))
    return st.one_of(st.just(api_type()), *arms)


@st.composite
def _compares(draw: st.DrawFn) -> api.Compare:
    # Only the arm `target` names travels (a one-of), so only it is drawn.
    target = draw(st.sampled_from(list(api.CompareTarget)))
    arm = {
        api.CompareTarget.VERSION: ("version", st.integers(-(2**63), 2**63 - 1)),
        api.CompareTarget.CREATE: ("create_revision", st.integers(-(2**63), 2**63 - 1)),
        api.CompareTarget.MOD: ("mod_revision", st.integers(-(2**63), 2**63 - 1)),
        api.CompareTarget.VALUE: ("value", _SMALL_BYTES),
        api.CompareTarget.LEASE: ("lease", st.integers(-(2**63), 2**63 - 1)),
    }[target]
    return api.Compare(
        result=draw(st.sampled_from(list(api.CompareResult))),
        target=target,
        key=draw(_SMALL_BYTES),
        range_end=draw(_SMALL_BYTES),
        **{arm[0]: draw(arm[1])},
    )


ALL_TYPES = sorted(TABLE, key=lambda t: t.__name__)


# ------------------------------------------------------------------ the table


@pytest.mark.parametrize("api_type", ALL_TYPES, ids=lambda t: t.__name__)
def test_table_names_every_field(api_type: type) -> None:
    pb_type, names = TABLE[api_type]
    assert set(names) == {f.name for f in dataclasses.fields(api_type)}
    assert set(names.values()) == set(pb_type.DESCRIPTOR.fields_by_name)  # type: ignore[attr-defined]
    assert pb_type.DESCRIPTOR.name == api_type.__name__  # type: ignore[attr-defined]


def test_wire_names_and_numbers_are_etcds() -> None:
    # Spot checks of etcd's rpc.proto / kv.proto numbering where it is not 1, 2, 3, ...
    assert rpc_pb2.RangeRequest.DESCRIPTOR.full_name == "etcdserverpb.RangeRequest"
    assert kv_pb2.KeyValue.DESCRIPTOR.full_name == "mvccpb.KeyValue"
    assert rpc_pb2.Compare.DESCRIPTOR.fields_by_name["range_end"].number == 64
    assert rpc_pb2.WatchResponse.DESCRIPTOR.fields_by_name["events"].number == 11
    assert rpc_pb2.LeaseTimeToLiveResponse.DESCRIPTOR.fields_by_name["grantedTTL"].number == 4
    assert rpc_pb2.StatusResponse.DESCRIPTOR.fields_by_name["isLearner"].number == 10
    assert rpc_pb2.RequestOp.DESCRIPTOR.fields_by_name["request_txn"].number == 4
    assert rpc_pb2.DESCRIPTOR.services_by_name["KV"].full_name == "etcdserverpb.KV"
    methods = {m.name for m in rpc_pb2.DESCRIPTOR.services_by_name["Lease"].methods}
    assert methods == {"LeaseGrant", "LeaseRevoke", "LeaseKeepAlive", "LeaseTimeToLive", "LeaseLeases"}
    # A put as etcd encodes it: key=1 (bytes), value=2 (bytes), lease=3 (varint).
    assert rpc_pb2.PutRequest(key=b"k", value=b"v", lease=5).SerializeToString() == b"\n\x01k\x12\x01v\x18\x05"


# --------------------------------------------------------------- round trips


@pytest.mark.parametrize("api_type", ALL_TYPES, ids=lambda t: t.__name__)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_every_value_round_trips_through_protobuf(api_type: type, data: st.DataObject) -> None:
    value = data.draw(values(api_type))
    msg = convert.to_pb(value)
    assert type(msg).__name__ == api_type.__name__
    assert convert.from_pb(msg) == value
    # ... and the bytes survive a trip through the wire and back to protobuf.
    again = type(msg).FromString(msg.SerializeToString())
    assert convert.to_pb(convert.from_pb(again)).SerializeToString() == msg.SerializeToString()


@settings(max_examples=60, deadline=None)
@given(value=values(api.TxnRequest, depth=3))
def test_nested_txn_requests_round_trip(value: api.TxnRequest) -> None:
    assert convert.from_pb(convert.to_pb(value)) == value


@settings(max_examples=60, deadline=None)
@given(value=values(api.TxnResponse, depth=3))
def test_nested_txn_responses_keep_their_headers(value: api.TxnResponse) -> None:
    msg = convert.to_pb(value)
    assert convert.from_pb(msg) == value
    for op in msg.responses:
        arm = op.WhichOneof("response")
        if arm is not None:
            assert getattr(op, arm).HasField("header")  # etcd fills nested headers too


@settings(max_examples=60, deadline=None)
@given(
    request=st.one_of(
        values(api.WatchCreateRequest), values(api.WatchCancelRequest), values(api.WatchProgressRequest)
    )
)
def test_watch_requests_round_trip_through_the_one_of(request: Any) -> None:
    msg = convert.watch_request_to_pb(request)
    assert msg.WhichOneof("request_union") is not None
    assert convert.watch_request_from_pb(rpc_pb2.WatchRequest.FromString(msg.SerializeToString())) == request


# ------------------------------------------------------------ special cases


def test_headers_are_always_on_the_wire() -> None:
    msg = convert.to_pb(api.PutResponse())
    assert msg.HasField("header")
    assert not msg.HasField("prev_kv")


def test_absent_optional_messages_read_as_none() -> None:
    assert convert.from_pb(rpc_pb2.PutResponse()).prev_kv is None
    assert convert.from_pb(rpc_pb2.MemberAddResponse()).member is None
    assert convert.from_pb(rpc_pb2.RequestOp()) == api.RequestOp()


def test_compare_sends_only_the_arm_its_target_names() -> None:
    c = api.Compare(target=api.CompareTarget.MOD, key=b"k", version=7, mod_revision=3)
    msg = convert.to_pb(c)
    assert msg.WhichOneof("target_union") == "mod_revision"
    assert convert.from_pb(msg) == api.Compare(target=api.CompareTarget.MOD, key=b"k", mod_revision=3)


def test_compare_arm_that_does_not_match_the_target_reads_as_zero_for_the_target() -> None:
    # etcd reads the operand through the arm its target names; any other arm is ignored.
    msg = rpc_pb2.Compare(target=rpc_pb2.Compare.MOD, key=b"k", version=7)
    c = convert.from_pb(msg)
    assert c.mod_revision == 0 and c.version == 7


def test_zero_compare_operand_is_still_sent_as_its_arm() -> None:
    msg = convert.to_pb(api.Compare(target=api.CompareTarget.VALUE, key=b"k", value=b""))
    assert msg.WhichOneof("target_union") == "value"


def test_unknown_sort_option_is_etcds_invalid_sort_option() -> None:
    with pytest.raises(convert.ErrInvalidSortOption) as e:
        convert.from_pb(rpc_pb2.RangeRequest(key=b"k", sort_order=9))  # type: ignore[arg-type]
    assert str(e.value) == "etcdserver: invalid sort option"
    with pytest.raises(convert.ErrInvalidSortOption):
        convert.from_pb(rpc_pb2.RangeRequest(key=b"k", sort_target=9))  # type: ignore[arg-type]


def test_empty_key_is_reported_before_a_bad_sort_option() -> None:
    from kv.errors import ErrEmptyKey

    with pytest.raises(ErrEmptyKey):
        convert.from_pb(rpc_pb2.RangeRequest(sort_order=9))  # type: ignore[arg-type]


def test_unknown_compare_enum_is_an_invalid_argument_naming_the_field() -> None:
    with pytest.raises(convert.ErrUnknownEnumValue, match="Compare.result value 7"):
        convert.from_pb(rpc_pb2.Compare(result=7, key=b"k"))  # type: ignore[arg-type]


def test_unknown_watch_filters_are_dropped_as_etcd_does() -> None:
    msg = rpc_pb2.WatchCreateRequest(key=b"k", filters=[1, 5, 0])  # type: ignore[list-item]
    assert convert.from_pb(msg).filters == (api.WatchFilterType.NODELETE, api.WatchFilterType.NOPUT)


def test_an_empty_watch_request_is_none() -> None:
    assert convert.watch_request_from_pb(rpc_pb2.WatchRequest()) is None


def test_converting_a_foreign_type_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        convert.to_pb(object())
    with pytest.raises(TypeError):
        convert.from_pb(rpc_pb2.AlarmRequest())

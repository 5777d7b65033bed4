"""etcd 3.4's grpc-gateway JSON (golang/protobuf jsonpb with OrigName) <-> protobuf messages.

Why a module of its own: the v3 JSON gateway (real_net/gateway.py) must read
bodies exactly as etcd's gateway does and refuse what it refuses with the
same words, and write responses with the same fields; that is a codec, not
HTTP. Rules (each as Go's decoder and jsonpb apply them):

* field names as in the .proto, and the lowerCamel JSON names on input too;
* bytes as standard base64, strict (a bad character or a missing pad is an
  error naming the byte: "illegal base64 data at input byte 4");
* 64-bit integers written as strings, read from strings or numbers (a
  fraction, an exponent or an overflow is an error);
* enums written as names, read from names or numbers;
* zero values left out of output; unknown fields and nulls ignored on input.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

__all__ = ["JSONError", "dumps", "loads", "loads_many", "message_to_json", "parse_message"]


def dumps(obj: Any) -> bytes:
    """JSON as Go's encoder writes it."""
    # Go's encoder: no spaces, non-ASCII kept as UTF-8, "<>&" escaped as \u003c... (HTML-safe).
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode()


class JSONError(Exception):
    """The body is not the JSON of the request message (a 400, code InvalidArgument).
    The text is what Go's decoder says for the same input, where we know it."""


_GO_INT = {
    FieldDescriptor.TYPE_INT64: ("int64", -(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: ("int64", -(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: ("int64", -(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: ("uint64", 0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: ("uint64", 0, 2**64 - 1),
    FieldDescriptor.TYPE_INT32: ("int32", -(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: ("int32", -(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: ("int32", -(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: ("uint32", 0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: ("uint32", 0, 2**32 - 1),
}
_B64_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


class _RawNumber(str):
    """A JSON number with a fraction or exponent, kept as written (Go quotes it in errors)."""


def _json_kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, dict):
        return "object"
    if isinstance(v, list):
        return "array"
    if isinstance(v, str) and not isinstance(v, _RawNumber):
        return "string"
    return "number"


def loads(data: bytes) -> Any:
    """Parse one JSON document; JSONError with Go's wording for a syntax error."""
    try:
        text = data.decode()
    except UnicodeDecodeError as e:
        raise JSONError(f"invalid character {chr(data[e.start])!r} looking for beginning of value") from None
    try:
        return json.loads(text, parse_float=_RawNumber)
    except json.JSONDecodeError as e:
        raise JSONError(_syntax_error(e)) from None


def loads_many(data: bytes) -> list[Any]:
    """The JSON values concatenated in a stream body (Go's json.Decoder reads them one by
    one). Values after the first that do not parse are dropped, as grpc-gateway stops
    reading the request stream there."""
    try:
        text = data.decode()
    except UnicodeDecodeError as e:
        raise JSONError(f"invalid character {chr(data[e.start])!r} looking for beginning of value") from None
    decoder = json.JSONDecoder(parse_float=_RawNumber)
    out: list[Any] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        if pos >= len(text):
            return out
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            if not out:
                raise JSONError(_syntax_error(e)) from None
            return out
        out.append(value)


def _syntax_error(e: json.JSONDecodeError) -> str:
    rest = e.doc[e.pos :].strip()
    if not rest:
        return "unexpected EOF"
    return f"invalid character {rest[0]!r} looking for beginning of value"


def _go_base64(text: str) -> bytes:
    """Decode as Go's base64.StdEncoding (padding required; CR and LF skipped)."""
    clean = text.replace("\r", "").replace("\n", "")
    try:
        return base64.b64decode(clean, validate=True)
    except (binascii.Error, ValueError):
        pass
    for i, ch in enumerate(text):
        if ch not in "\r\n=" and ord(ch) not in _B64_ALPHABET:
            raise JSONError(f"illegal base64 data at input byte {i}")
    pad = clean.find("=")
    position = (len(clean) // 4) * 4 if pad < 0 else pad
    raise JSONError(f"illegal base64 data at input byte {position}")


def _go_enum_name(fd: FieldDescriptor) -> str:
    enum = fd.enum_type
    package = enum.file.package
    return f"{package}.{enum.full_name[len(package) + 1 :].replace('.', '_')}"


def _scalar(value: Any, fd: FieldDescriptor) -> Any:
    t = fd.type
    if t in _GO_INT:
        go_type, low, high = _GO_INT[t]
        raw = value
        if isinstance(value, str) and not isinstance(value, _RawNumber):
            # jsonpb unquotes a quoted integer and parses what is inside as a JSON number.
            inner = value.strip()
            try:
                raw = json.loads(inner, parse_float=_RawNumber) if inner else inner
            except json.JSONDecodeError:
                raise JSONError(_syntax_error(json.JSONDecodeError("", inner, 0))) from None
        if isinstance(raw, bool) or not isinstance(raw, int):
            if isinstance(raw, _RawNumber):
                raise JSONError(f"json: cannot unmarshal number {raw} into Go value of type {go_type}")
            raise JSONError(f"json: cannot unmarshal {_json_kind(raw)} into Go value of type {go_type}")
        if not low <= raw <= high:
            raise JSONError(f"json: cannot unmarshal number {raw} into Go value of type {go_type}")
        return raw
    if t == FieldDescriptor.TYPE_BOOL:
        if not isinstance(value, bool):
            raise JSONError(f"json: cannot unmarshal {_json_kind(value)} into Go value of type bool")
        return value
    if t == FieldDescriptor.TYPE_BYTES:
        if not isinstance(value, str) or isinstance(value, _RawNumber):
            raise JSONError(f"json: cannot unmarshal {_json_kind(value)} into Go value of type []uint8")
        return _go_base64(value)
    if t == FieldDescriptor.TYPE_STRING:
        if not isinstance(value, str) or isinstance(value, _RawNumber):
            raise JSONError(f"json: cannot unmarshal {_json_kind(value)} into Go value of type string")
        return value
    if t == FieldDescriptor.TYPE_ENUM:
        if isinstance(value, str) and not isinstance(value, _RawNumber):
            number = fd.enum_type.values_by_name.get(value)
            if number is None:
                raise JSONError(f"unknown value {json.dumps(value)} for enum {_go_enum_name(fd)}")
            return number.number
        if isinstance(value, bool) or not isinstance(value, int) or not -(2**31) <= value < 2**31:
            raise JSONError(f"json: cannot unmarshal {_json_kind(value)} into Go value of type int32")
        return value  # proto3 enums are open: the servicer judges unknown numbers
    raise JSONError(f"raftkv: field {fd.name} of an unsupported type")  # pragma: no cover


_FIELDS: dict[Descriptor, dict[str, FieldDescriptor]] = {}


def _fields(desc: Descriptor) -> dict[str, FieldDescriptor]:
    names = _FIELDS.get(desc)
    if names is None:
        names = {}
        for fd in desc.fields:
            names[fd.json_name] = fd
            names[fd.name] = fd
        _FIELDS[desc] = names
    return names


def _fill(obj: Any, msg: Message) -> None:
    if not isinstance(obj, dict):
        raise JSONError(f"json: cannot unmarshal {_json_kind(obj)} into Go value of type map[string]json.RawMessage")
    names = _fields(msg.DESCRIPTOR)
    for key, value in obj.items():
        fd = names.get(key)
        if fd is None or value is None:
            continue  # unknown fields and nulls are ignored, as etcd's gateway does
        if fd.is_repeated:
            if not isinstance(value, list):
                raise JSONError(f"json: cannot unmarshal {_json_kind(value)} into Go value of type []json.RawMessage")
            target = getattr(msg, fd.name)
            for item in value:
                if fd.type == FieldDescriptor.TYPE_MESSAGE:
                    _fill(item, target.add())
                else:
                    target.append(_scalar(item, fd))
        elif fd.type == FieldDescriptor.TYPE_MESSAGE:
            sub = getattr(msg, fd.name)
            sub.SetInParent()  # present even when {} (a one-of arm, a nested request)
            _fill(value, sub)
        else:
            setattr(msg, fd.name, _scalar(value, fd))


def parse_message(obj: Any, cls: type[Message]) -> Message:
    """The protobuf message `cls` from a parsed JSON value, as jsonpb reads it."""
    msg = cls()
    _fill(obj, msg)
    return msg


def message_to_json(msg: Message) -> Any:
    """jsonpb's output with OrigName: proto field names, int64 as strings, bytes as
    base64, enum names, zero values left out."""
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)

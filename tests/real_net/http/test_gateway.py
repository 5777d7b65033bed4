"""The v3 JSON gateway answers as etcd 3.4's grpc-gateway does, field by field.

A real etcd (Debian's etcd-server, one member, fresh, on free ports) and a
fresh raftkv client port over LocalBackend get the same POSTs with curl's
bodies; both stores start at revision 1, so statuses and bodies must agree
once the IDs, ports and raft term are replaced by placeholders. Where raftkv
differs on purpose (README "HTTP/JSON": JSON bodies for wrong methods and
unknown paths, 400 rather than 500 for bad base64 in a watch) the test says so.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from real_net.jsonpb import JSONError, loads, message_to_json, parse_message
from real_net.proto import kv_pb2
from real_net.proto import rpc_pb2 as pb

from .support import PortThread, RealEtcd, Reply, call, free_port, normalize_v3

pytestmark = pytest.mark.timeout(60)


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


class Side:
    def __init__(self, name: str, base: str, peer_port: int) -> None:
        self.name, self.base = name, base
        status = call(base, "POST", "/v3/maintenance/status", {}).json
        header = status["header"]
        self.subs = {header["cluster_id"]: "<cluster>", header["member_id"]: "<member>",
                     str(peer_port): "<peer-port>", base.rsplit(":", 1)[1]: "<client-port>"}  # fmt: skip

    def post(self, path: str, body: Any) -> tuple[int, Any]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        r = call(self.base, "POST", path, data)
        try:
            doc = r.json
        except ValueError:
            doc = r.text
        return r.status, normalize_v3(doc, self.subs)


class Pair:
    def __init__(self, etcd: Side, raftkv: Side) -> None:
        self.etcd, self.raftkv = etcd, raftkv

    def same(self, path: str, body: Any) -> tuple[int, Any]:
        a, b = self.etcd.post(path, body), self.raftkv.post(path, body)
        assert b == a, f"POST {path} {body!r}: raftkv (right) differs from etcd (left)"
        return a


@pytest.fixture
def pair() -> Iterator[Pair]:
    peer_port = free_port()
    with RealEtcd() as etcd, PortThread(peer_urls=(f"http://127.0.0.1:{peer_port}",)) as raftkv:
        yield Pair(Side("etcd", f"http://{etcd.endpoint}", etcd.peer_port), Side("raftkv", raftkv.url, peer_port))


def test_kv_requests_answer_field_by_field_as_etcd(pair: Pair) -> None:
    assert pair.same("/v3/kv/put", {"key": b64("foo"), "value": b64("bar")})[0] == 200
    pair.same("/v3/kv/put", {"key": b64("foo"), "value": b64("baz"), "prev_kv": True})
    for k in ("fop", "foz", "zz"):
        pair.same("/v3/kv/put", {"key": b64(k), "value": b64(k.upper())})
    status, body = pair.same("/v3/kv/range", {"key": b64("foo")})
    assert body["kvs"][0]["version"] == "2" and body["count"] == "1"  # int64 as strings
    pair.same("/v3/kv/range", {"key": b64("fo"), "range_end": b64("fp"), "limit": 2})
    pair.same("/v3/kv/range", {"key": b64("fo"), "range_end": b64("fp"), "limit": "2", "count_only": True})
    pair.same("/v3/kv/range", {"key": b64("fo"), "range_end": b64("fp"), "keys_only": True,
                               "sort_order": "DESCEND", "sort_target": "VALUE"})  # fmt: skip
    pair.same("/v3/kv/range", {"key": b64("fo"), "range_end": b64("fp"), "sort_order": 1, "sort_target": 4})
    pair.same("/v3/kv/range", {"key": b64("foo"), "revision": "2"})
    pair.same("/v3beta/kv/range", {"key": b64("foo"), "keysOnly": True})  # lowerCamel names read too
    # A delete of a missing key has no "deleted" (zero values are left out).
    assert pair.same("/v3/kv/deleterange", {"key": b64("none")})[1].keys() == {"header"}
    pair.same("/v3/kv/deleterange", {"key": b64("fo"), "range_end": b64("fp"), "prev_kv": True})
    pair.same("/v3/kv/txn", {
        "compare": [{"target": "VALUE", "key": b64("zz"), "value": b64("ZZ"), "result": "EQUAL"}],
        "success": [{"request_put": {"key": b64("zz"), "value": b64("new")}},
                    {"request_range": {"key": b64("zz")}}],
        "failure": [{"request_range": {"key": b64("zz")}}],
    })  # fmt: skip
    status, body = pair.same("/v3/kv/txn", {
        "compare": [{"target": 2, "key": b64("zz"), "mod_revision": "1", "result": "LESS"}],
        "success": [{"request_delete_range": {"key": b64("zz")}}],
        "failure": [{"request_range": {"key": b64("zz")}}],
    })  # fmt: skip
    assert "succeeded" not in body  # false is a zero value
    pair.same("/v3/kv/compaction", {"revision": "3"})
    pair.same("/v3/kv/range", {"key": b64("foo"), "revision": 2})


def test_leases_cluster_and_maintenance_answer_as_etcd(pair: Pair) -> None:
    pair.same("/v3/lease/grant", {"TTL": "60", "ID": "777"})
    pair.same("/v3/lease/grant", {"TTL": 60, "ID": 777})  # lease already exists: 412
    pair.same("/v3/kv/put", {"key": b64("leased"), "value": b64("v"), "lease": "777"})
    pair.same("/v3/lease/leases", {})
    pair.same("/v3/kv/lease/leases", {})
    for path in ("/v3/lease/timetolive", "/v3/kv/lease/timetolive"):
        a = pair.etcd.post(path, {"ID": "777", "keys": True})
        b = pair.raftkv.post(path, {"ID": "777", "keys": True})
        for side in (a, b):  # the TTL left depends on timing
            assert side[1].pop("TTL") in ("59", "60")
        assert b == a
    pair.same("/v3/kv/lease/timetolive", {"ID": "12345"})  # unknown: TTL -1
    pair.same("/v3/lease/revoke", {"ID": "777"})
    pair.same("/v3/kv/lease/revoke", {"ID": "777"})  # 404 lease not found
    pair.same("/v3/kv/range", {"key": b64("leased")})
    pair.same("/v3/cluster/member/list", {})  # no revision in a cluster header
    pair.same("/v3/cluster/member/remove", {"ID": "1"})
    pair.same("/v3/auth/authenticate", {"name": "root", "password": "x"})
    a, b = pair.etcd.post("/v3/maintenance/status", {}), pair.raftkv.post("/v3/maintenance/status", {})
    assert a[0] == b[0] == 200 and a[1].keys() == b[1].keys() and a[1]["header"] == b[1]["header"]


def test_keepalive_and_watch_stream_result_lines_as_etcd(pair: Pair) -> None:
    # An unknown lease's keep-alive: one result with TTL 0 (left out), then the stream ends.
    pair.same("/v3/lease/keepalive", {"ID": "12345"})
    for side in (pair.etcd, pair.raftkv):
        call(side.base, "POST", "/v3/kv/put", {"key": b64("w"), "value": b64("1")})
        call(side.base, "POST", "/v3/kv/put", {"key": b64("w"), "value": b64("2")})
    outs = []
    for side in (pair.etcd, pair.raftkv):
        lines = _stream(side.base, "/v3/watch", {"create_request": {"key": b64("w"), "start_revision": "2"}}, 2)
        outs.append([normalize_v3(json.loads(x), side.subs) for x in lines])
    assert outs[1] == outs[0]
    assert outs[0][0]["result"]["created"] is True
    assert [e["kv"]["value"] for e in outs[0][1]["result"]["events"]] == [b64("1"), b64("2")]


def _stream(base: str, path: str, body: Any, lines: int, timeout: float = 15.0) -> list[str]:
    """Read `lines` lines of a streamed response, then hang up."""
    host, port = base.rsplit("//", 1)[1].rsplit(":", 1)
    data = json.dumps(body).encode()
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (path.encode(), len(data), data))
        buf = b""
        deadline = time.monotonic() + timeout
        while _chunk_lines(buf) < lines:
            assert time.monotonic() < deadline, buf
            more = s.recv(65536)
            if not more:
                break
            buf += more
    head, _, body_bytes = buf.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head, head
    return [x for x in _dechunk(body_bytes).decode().split("\n") if x][:lines]


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        if not size_line or not rest and size_line != b"0":
            break
        size = int(size_line, 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return out


def _chunk_lines(buf: bytes) -> int:
    return _dechunk(buf.partition(b"\r\n\r\n")[2]).count(b"\n")


def test_bad_input_is_a_4xx_with_an_etcd_error_body_as_etcd_says_it(pair: Pair) -> None:
    cases: list[Any] = [
        b'{"key":',  # unexpected EOF
        b"[1,2]",
        {"key": "Zm9v!!"},  # illegal base64 data at input byte 4
        {"key": 5},
        {"key": b64("foo"), "limit": "abc"},
        {"key": b64("foo"), "limit": 1.5},
        {"key": b64("foo"), "limit": "9223372036854775808"},
        {"key": b64("foo"), "keys_only": "true"},
        {"key": b64("foo"), "sort_order": "BOGUS"},
        {"key": ""},  # etcdserver: key is not provided
        {"key": b64("foo"), "revision": "100"},  # future revision: 400 with code 11
    ]
    for body in cases:
        status, doc = pair.same("/v3/kv/range", body)
        assert 400 <= status < 500 and set(doc) == {"error", "message", "code"}, (body, status, doc)
    # Unknown fields and nulls are ignored.
    pair.same("/v3/kv/put", {"key": b64("foo"), "value": b64("v"), "junk": {"a": [1]}, "lease": None})
    # What gRPC itself would refuse: a 429 with gRPC's text.
    status, doc = pair.same("/v3/kv/put", {"key": b64("foo"), "value": "A" * 3_000_000})
    assert status == 429 and doc["code"] == 8


def test_wrong_methods_and_paths_get_json_errors_where_etcd_sends_text(pair: Pair) -> None:
    for side in (pair.etcd, pair.raftkv):
        r = call(side.base, "GET", "/v3/kv/range")
        assert r.status == 405
        r = call(side.base, "POST", "/v3/kv/nothing", b"{}")
        assert r.status == 404
    assert call(pair.raftkv.base, "GET", "/v3/kv/range").json == {
        "error": "Method Not Allowed", "message": "Method Not Allowed", "code": 12}  # fmt: skip
    assert call(pair.raftkv.base, "POST", "/v3/kv/nothing", b"{}").json["code"] == 5
    # etcd answers a bad base64 inside a watch request with a 500; raftkv with a 400.
    r = call(pair.raftkv.base, "POST", "/v3/watch", {"create_request": {"key": "Zm9v!"}})
    assert r.status == 400 and r.json["code"] == 3


def test_version_and_health_have_etcds_fields(pair: Pair) -> None:
    for side in (pair.etcd, pair.raftkv):
        v = call(side.base, "GET", "/version")
        assert v.status == 200 and set(v.json) == {"etcdserver", "etcdcluster"}
        assert v.json["etcdcluster"].endswith(".0")
        h = call(side.base, "GET", "/health")
        assert h.status == 200 and h.json["health"] == "true"


# ------------------------------------------------------------ no server needed


def test_json_parsing_follows_jsonpb() -> None:
    msg = parse_message({"key": "Zm9v", "limit": "5", "revision": 7, "sortOrder": "DESCEND", "sort_target": 2,
                         "serializable": True, "unknown": 1, "min_mod_revision": None}, pb.RangeRequest)  # fmt: skip
    assert msg == pb.RangeRequest(key=b"foo", limit=5, revision=7, sort_order=2, sort_target=2, serializable=True)
    txn = parse_message({"success": [{"request_txn": {}}]}, pb.TxnRequest)
    assert txn.success[0].WhichOneof("request") == "request_txn"  # {} sets the arm
    for bad, text in (
        ({"key": "Zm9"}, "illegal base64 data at input byte 0"),
        ({"key": "Zm9v!!"}, "illegal base64 data at input byte 4"),
        ({"limit": True}, "json: cannot unmarshal bool into Go value of type int64"),
        ({"limit": "1e2"}, "json: cannot unmarshal number 1e2 into Go value of type int64"),
        ({"sort_order": "UP"}, 'unknown value "UP" for enum etcdserverpb.RangeRequest_SortOrder'),
        ({"keys_only": 1}, "json: cannot unmarshal number into Go value of type bool"),
    ):
        with pytest.raises(JSONError, match=text):
            parse_message(loads(json.dumps(bad).encode()), pb.RangeRequest)
    with pytest.raises(JSONError, match="unexpected EOF"):
        loads(b'{"key":')
    out = message_to_json(pb.RangeResponse(kvs=[kv_pb2.KeyValue(key=b"k", version=1)], more=False))
    assert out == {"header": {}, "kvs": [{"key": "aw==", "version": "1"}]} or out == {
        "kvs": [{"key": "aw==", "version": "1"}]}  # fmt: skip


def test_many_requests_on_one_keep_alive_connection() -> None:
    import http.client

    with PortThread() as port:
        conn = http.client.HTTPConnection("127.0.0.1", port.port.port, timeout=5)
        try:
            for i in range(20):
                conn.request("POST", "/v3/kv/put", body=json.dumps({"key": b64("k"), "value": b64(str(i))}))
                r = conn.getresponse()
                assert r.status == 200, r.read()
                r.read()
        finally:
            conn.close()
        assert port.port.connections["http"] == 1
        reply: Reply = call(port.url, "POST", "/v3/kv/range", {"key": b64("k")})
        assert reply.json["kvs"][0]["version"] == "20"


def test_a_watch_stream_ends_when_the_client_hangs_up() -> None:
    with PortThread() as port:
        done = threading.Event()

        def hang_up() -> None:
            _stream(port.url, "/v3/watch", {"create_request": {"key": b64("x")}}, 1)
            done.set()

        t = threading.Thread(target=hang_up)
        t.start()
        t.join(20)
        assert done.is_set()
        # Hanging up before reading anything releases the watch too.
        for path in ("/v3/watch", "/v2/keys/x?wait=true"):
            body = json.dumps({"create_request": {"key": b64("x")}}).encode() if path == "/v3/watch" else b""
            with socket.create_connection(("127.0.0.1", port.port.port)) as s:
                s.sendall(b"%s %s HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s"
                          % (b"POST" if body else b"GET", path.encode(), len(body), body))  # fmt: skip
        # The server may not even have opened those watches yet: wait until none has been
        # open for a whole second (each one opens, sees the hang-up and closes).
        deadline = time.monotonic() + 15
        quiet_since = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - quiet_since < 1.0:
            if port.run(_open_streams(port)):
                quiet_since = time.monotonic()
            time.sleep(0.05)
        assert port.run(_open_streams(port)) == 0


async def _open_streams(port: PortThread) -> int:
    return len(port.backend._streams)


def test_etcd3gw_client_works_against_the_port() -> None:
    import etcd3gw  # a dev dependency (pyproject)
    with PortThread(min_lease_ttl=1) as port:
        c = etcd3gw.client(host="127.0.0.1", port=port.port.port)
        assert c.put("k1", "v1") and c.get("k1") == [b"v1"]
        c.put("pfx/a", "1")
        c.put("pfx/b", "2")
        assert [v for v, _ in c.get_prefix("pfx/")] == [b"1", b"2"]
        assert c.replace("k1", "v1", "v2") is True and c.replace("k1", "zz", "v3") is False
        assert c.get("k1") == [b"v2"]
        assert c.delete("k1") is True and c.delete("k1") is False
        events, cancel = c.watch("wk")
        seen: list[Any] = []
        t = threading.Thread(target=lambda: seen.append(next(iter(events))))
        t.start()
        time.sleep(0.3)
        c.put("wk", "x")
        t.join(10)
        cancel()
        assert seen and seen[0]["kv"]["value"] == b"x"
        lease = c.lease(ttl=10)
        assert lease.ttl() in (9, 10) and lease.refresh() == 10
        c.put("leased", "v", lease=lease)
        assert lease.keys() == [b"leased"]
        lease.revoke()
        assert c.get("leased") == []
        lock = c.lock("mylock", ttl=10)
        assert lock.acquire() and lock.is_acquired()
        assert lock.release()
        assert c.members()[0]["clientURLs"] == [port.url]
        assert {"header", "version", "dbSize", "leader", "raftIndex", "raftTerm"} <= set(c.status())

"""One client port serves gRPC and HTTP/1.1 JSON, in plain TCP and in TLS, as etcd's does.

The port tells the two apart from the first bytes without consuming them (the
HTTP/2 preface; in TLS, the ClientHello's ALPN list), relays gRPC connections
to the gRPC server and serves HTTP/1.1 itself. These specifications drive it
with the real clients (grpc stubs, etcdctl, curl) and with raw sockets for the
HTTP corner cases; every test stops what it starts.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

from collections.abc import Iterator

import grpc
import pytest

from real_net import certs
from real_net.client_port import alpn_protocols, is_grpc_alpn
from real_net.grpc_server import ServerTLS
from real_net.proto import rpc_pb2 as pb
from real_net.proto import rpc_pb2_grpc as pb_grpc

from ..api.support import etcdctl, require_binary
from .support import PortThread, call

pytestmark = pytest.mark.timeout(60)


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def client_hello(alpn: list[str] | None) -> bytes:
    """The first flight a TLS client sends, offering `alpn`."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn is not None:
        ctx.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def test_alpn_is_read_from_the_client_hello() -> None:
    for offered in (["h2"], ["grpc-exp", "h2"], ["h2", "http/1.1"], ["http/1.1"]):
        assert alpn_protocols(client_hello(offered)) == offered
    assert alpn_protocols(client_hello(None)) == []
    hello = client_hello(["h2"])
    assert alpn_protocols(hello[:40]) is None  # not whole yet: wait for more bytes
    assert alpn_protocols(b"GET / HTTP/1.1\r\n") is None
    # gRPC clients offer h2 without http/1.1; curl and browsers offer both.
    assert is_grpc_alpn(["grpc-exp", "h2"]) and is_grpc_alpn(["h2"])
    assert not is_grpc_alpn(["h2", "http/1.1"]) and not is_grpc_alpn([])


def test_plain_port_serves_grpc_stubs_etcdctl_and_http_json_together() -> None:
    with PortThread() as port:
        with grpc.insecure_channel(port.endpoint) as channel:
            kv = pb_grpc.KVStub(channel)
            kv.Put(pb.PutRequest(key=b"from-grpc", value=b"1"), timeout=5)
            r = call(port.url, "POST", "/v3/kv/range", {"key": b64("from-grpc")})
            assert r.status == 200 and r.json["kvs"][0]["value"] == b64("1")
            call(port.url, "PUT", "/v2/keys/from-v2", "value=2")
            got = kv.Range(pb.RangeRequest(key=b"\x00v2/", range_end=b"\x00v20"), timeout=5)
            assert [k.key for k in got.kvs] == [b"\x00v2/event", b"\x00v2/keys/from-v2"]
        out = etcdctl(port.endpoint, "get", "from-grpc", "--print-value-only")
        assert out.returncode == 0 and out.stdout == "1\n", out.text
        assert port.port.connections["grpc"] >= 2 and port.port.connections["http"] >= 2


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> certs.CertPaths:
    return certs.ensure_certs(tmp_path_factory.mktemp("certs"), ["m1"], hosts=["localhost", "127.0.0.1"])


def test_tls_port_with_client_cert_auth_serves_grpc_and_curl_and_refuses_strangers(
    tls_files: certs.CertPaths,
) -> None:
    m1, client = tls_files.member("m1"), tls_files.client
    tls = ServerTLS(m1.cert, m1.key, tls_files.ca, client_cert_auth=True)
    curl = require_binary("curl")
    with PortThread(tls=tls) as port:
        creds = grpc.ssl_channel_credentials(
            tls_files.ca.read_bytes(), client.key.read_bytes(), client.cert.read_bytes()
        )
        with grpc.secure_channel(f"localhost:{port.port.port}", creds) as channel:
            pb_grpc.KVStub(channel).Put(pb.PutRequest(key=b"k", value=b"tls"), timeout=5)
        # curl offers h2 and http/1.1 in ALPN: the port picks HTTP/1.1 and serves JSON.
        base = [curl, "-s", "--cacert", str(tls_files.ca), "--cert", str(client.cert), "--key", str(client.key)]
        out = subprocess.run([*base, "-X", "POST", f"https://localhost:{port.port.port}/v3/kv/range",
                              "-d", json.dumps({"key": b64("k")})], capture_output=True, text=True, timeout=10)  # fmt: skip
        assert out.returncode == 0 and json.loads(out.stdout)["kvs"][0]["value"] == b64("tls"), out
        out = subprocess.run([*base, "-w", "%{http_version}", "-o", "/dev/null",
                              f"https://localhost:{port.port.port}/v2/keys/"], capture_output=True, text=True,
                             timeout=10)  # fmt: skip
        assert out.stdout == "1.1"
        # Without a client certificate neither face lets the client in.
        out = subprocess.run([curl, "-s", "--cacert", str(tls_files.ca), f"https://localhost:{port.port.port}/health"],
                             capture_output=True, timeout=10)  # fmt: skip
        assert out.returncode != 0
        anon = grpc.ssl_channel_credentials(tls_files.ca.read_bytes())
        with grpc.secure_channel(f"localhost:{port.port.port}", anon) as channel:
            with pytest.raises(grpc.RpcError) as err:
                pb_grpc.KVStub(channel).Range(pb.RangeRequest(key=b"k"), timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        # Plain HTTP on the TLS port gets Go's answer.
        with socket.create_connection(("127.0.0.1", port.port.port), timeout=5) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(1024).startswith(b"HTTP/1.0 400 Bad Request")
        # etcdctl over TLS through the port.
        tls_args = [f"--cacert={tls_files.ca}", f"--cert={client.cert}", f"--key={client.key}"]
        r = etcdctl(f"https://localhost:{port.port.port}", "get", "k", "--print-value-only", tls=tls_args)
        assert r.returncode == 0 and r.stdout == "tls\n", r.text


def raw(port: int, data: bytes, read_until_close: bool = True) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        out = b""
        while True:
            try:
                more = s.recv(65536)
            except TimeoutError:
                break
            if not more:
                break
            out += more
            if not read_until_close:
                break
        return out


def test_http_corner_cases_get_4xx_answers_and_the_port_keeps_serving() -> None:
    with PortThread() as port:
        p = port.port.port
        body = json.dumps({"key": b64("c"), "value": b64("chunked")}).encode()
        chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        out = raw(p, b"POST /v3/kv/put HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                  + chunked)  # fmt: skip
        assert out.startswith(b"HTTP/1.1 200 OK"), out
        # Expect: 100-continue is answered before the body is sent.
        with socket.create_connection(("127.0.0.1", p), timeout=5) as s:
            s.sendall(b"POST /v3/kv/range HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: %d\r\n"
                      b"Connection: close\r\n\r\n" % len(b'{"key":"Yw=="}'))  # fmt: skip
            assert s.recv(1024) == b"HTTP/1.1 100 Continue\r\n\r\n"
            s.sendall(b'{"key":"Yw=="}')
            assert s.recv(65536).startswith(b"HTTP/1.1 200 OK")
        # A body over the limit is refused from its Content-Length, without reading it.
        out = raw(p, b"POST /v3/kv/put HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 413"), out
        assert json.loads(out.split(b"\r\n\r\n", 1)[1])["code"] == 3
        assert raw(p, b"NOT HTTP AT ALL\r\n\r\n").startswith(b"HTTP/1.1 400")
        assert raw(p, b"GET /health HTTP/1.1\r\nBad Header\r\n\r\n").startswith(b"HTTP/1.1 400")
        assert raw(p, b"GET /health HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n").startswith(b"HTTP/1.1 431")
        assert raw(p, b"POST /v3/kv/put HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").startswith(
            b"HTTP/1.1 400")  # fmt: skip
        head = raw(p, b"HEAD /version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and head.endswith(b"\r\n\r\n")
        assert raw(p, b"GET /nowhere HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 404")
        # A client that connects and says nothing, or hangs up at once, harms no one.
        socket.create_connection(("127.0.0.1", p)).close()
        assert call(port.url, "GET", "/health").json == {"health": "true"}
        r = call(port.url, "POST", "/v3/kv/range", {"key": b64("c")})
        assert r.json["kvs"][0]["value"] == b64("chunked")


def test_stop_ends_open_streams_and_closes_the_inner_grpc_socket() -> None:
    port = PortThread().__enter__()
    try:
        inner = port.port._grpc_path
        if inner.startswith("\0"):  # Linux: abstract, nothing on disk
            assert inner[1:] in Path("/proc/net/unix").read_text()
        else:
            assert (Path(inner).parent.stat().st_mode & 0o777) == 0o700
        ended = threading.Event()

        def long_poll() -> None:
            try:
                call(port.url, "GET", "/v2/keys/nothing?wait=true", timeout=20)
            except Exception:
                pass
            ended.set()

        t = threading.Thread(target=long_poll)
        t.start()
        time.sleep(0.3)
        assert not ended.is_set()
    finally:
        port.__exit__()
    t.join(10)
    assert ended.is_set()
    if inner.startswith("\0"):
        assert inner[1:] not in Path("/proc/net/unix").read_text()
    else:
        assert not Path(inner).parent.exists()


def test_a_grpc_watch_stream_through_the_port_sees_writes_made_over_http() -> None:
    with PortThread() as port, grpc.insecure_channel(port.endpoint) as channel:
        requests = [pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"w"))]

        def gen() -> Iterator[pb.WatchRequest]:
            yield from requests
            time.sleep(10)  # keep the stream open from our side

        stream = pb_grpc.WatchStub(channel).Watch(gen(), timeout=10)
        assert next(stream).created
        call(port.url, "POST", "/v3/kv/put", {"key": b64("w"), "value": b64("over-http")})
        resp = next(stream)
        assert resp.events[0].kv.value == b"over-http"
        stream.cancel()


def test_an_http_only_port_turns_grpc_away_and_serves_json() -> None:
    with PortThread(port_options={"serve_grpc": False, "enable_v2": False}) as port:
        assert call(port.url, "POST", "/v3/kv/put", {"key": b64("h"), "value": b64("1")}).status == 200
        assert call(port.url, "GET", "/v2/keys/").status == 404  # v2 off
        with grpc.insecure_channel(port.endpoint) as channel:
            with pytest.raises(grpc.RpcError) as err:
                pb_grpc.KVStub(channel).Range(pb.RangeRequest(key=b"h"), timeout=3)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE

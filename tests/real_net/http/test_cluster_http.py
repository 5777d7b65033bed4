"""The HTTP/JSON faces on a real 3-member raftkv cluster over TLS with --client-cert-auth.

Three ``real_net.server.MemberServer`` (disk, Raft, peer transport) run on one
event loop in a thread, each serving its client port through
``client_port.serve_client_port`` (patched in where the server starts its
gRPC server). Clients talk to all three members: writes go through
followers, reads and watches through others, so every v2 and v3 answer
here went through Raft. A client without a certificate is turned away.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import grpc
import pytest

import real_net.server as server_module
from real_net import certs
from real_net.client_port import serve_client_port
from real_net.proto import rpc_pb2 as pb
from real_net.proto import rpc_pb2_grpc as pb_grpc
from real_net.server import MemberServer, ServerConfig

from ..api.support import free_port, require_binary
from .support import Reply, call

pytestmark = pytest.mark.timeout(90)
NAMES = ("n1", "n2", "n3")


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


async def _serve_port(backend: Any, host: str, port: int, *, tls: Any = None, **kw: Any) -> Any:
    return await serve_client_port(backend, host, port, tls=tls, **kw)


class TLSCluster:
    def __init__(self, root: Path) -> None:
        self.paths = certs.ensure_certs(root / "certs", NAMES, hosts=["localhost", "127.0.0.1"])
        self.ctx = certs.client_context(self.paths.ca, self.paths.client.cert, self.paths.client.key)
        urls = {n: (free_port(), free_port()) for n in NAMES}
        initial = tuple((n, f"https://127.0.0.1:{urls[n][1]}") for n in NAMES)
        self.configs = [
            ServerConfig(
                name=n, data_dir=root / n, listen_client_url=f"https://127.0.0.1:{urls[n][0]}",
                listen_peer_url=f"https://127.0.0.1:{urls[n][1]}", initial_cluster=initial,
                cert_file=self.paths.member(n).cert, key_file=self.paths.member(n).key,
                trusted_ca_file=self.paths.ca, client_cert_auth=True, unsafe_no_fsync=True,
            )  # fmt: skip
            for n in NAMES
        ]
        self.urls = [f"https://localhost:{urls[n][0]}" for n in NAMES]
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="raftkv-tls-cluster", daemon=True)
        self.servers: list[MemberServer] = []

    def run(self, coro: Any, timeout: float = 30.0) -> Any:
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    def start(self) -> None:
        self.thread.start()

        async def start() -> None:
            for cfg in self.configs:
                s = MemberServer(cfg)
                self.servers.append(s)
            await asyncio.gather(*(s.start() for s in self.servers))

        self.run(start())
        deadline = time.monotonic() + 30
        for url in self.urls:
            while True:
                try:
                    if self.call(url, "GET", "/health", timeout=3).status == 200:
                        break
                except OSError:
                    pass
                assert time.monotonic() < deadline, "the cluster did not become healthy"
                time.sleep(0.1)

    def stop(self) -> None:
        async def stop() -> None:
            await asyncio.gather(*(s.stop() for s in self.servers), return_exceptions=True)

        try:
            if self.thread.is_alive():
                self.run(stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()

    def call(self, base: str, method: str, path: str, body: Any = None, timeout: float = 10.0) -> Reply:
        return call(base, method, path, body, context=self.ctx, timeout=timeout)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSCluster]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(server_module, "start_server", _serve_port)
        c = TLSCluster(tmp_path_factory.mktemp("tls-cluster"))
        try:
            c.start()
            yield c
        finally:
            c.stop()


def form(**kw: Any) -> str:
    return urllib.parse.urlencode(kw)


def test_v3_json_writes_through_one_member_are_read_on_the_others(cluster: TLSCluster) -> None:
    r = cluster.call(cluster.urls[0], "POST", "/v3/kv/put", {"key": b64("v3k"), "value": b64("v")})
    assert r.status == 200, r.text
    for url in cluster.urls[1:]:
        got = cluster.call(url, "POST", "/v3/kv/range", {"key": b64("v3k")}).json
        assert got["kvs"][0]["value"] == b64("v")
    members = cluster.call(cluster.urls[2], "POST", "/v3/cluster/member/list", {}).json["members"]
    assert sorted(m["name"] for m in members) == list(NAMES)
    creds = grpc.ssl_channel_credentials(cluster.paths.ca.read_bytes(), cluster.paths.client.key.read_bytes(),
                                         cluster.paths.client.cert.read_bytes())  # fmt: skip
    with grpc.secure_channel(cluster.urls[1].split("//")[1], creds) as channel:
        resp = pb_grpc.KVStub(channel).Range(pb.RangeRequest(key=b"v3k"), timeout=5)
        assert resp.kvs[0].value == b"v"


def test_a_client_without_a_certificate_is_refused(cluster: TLSCluster) -> None:
    curl = require_binary("curl")
    anon = ssl.create_default_context(cafile=str(cluster.paths.ca))
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        call(cluster.urls[0], "GET", "/health", context=anon).status  # noqa: B018
    out = subprocess.run([curl, "-s", "--cacert", str(cluster.paths.ca), f"{cluster.urls[0]}/v2/keys/"],
                         capture_output=True, timeout=10)  # fmt: skip
    assert out.returncode != 0
    out = subprocess.run([curl, "-s", "--cacert", str(cluster.paths.ca), "--cert", str(cluster.paths.client.cert),
                          "--key", str(cluster.paths.client.key), f"{cluster.urls[0]}/v2/keys/"],
                         capture_output=True, timeout=10)  # fmt: skip
    assert out.returncode == 0 and json.loads(out.stdout)["action"] == "get"


def _together(n: int, fn: Any) -> list[Any]:
    barrier = threading.Barrier(n)
    out: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        out[i] = fn(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


def test_v2_exclusive_lock_across_members_has_exactly_one_winner(cluster: TLSCluster) -> None:
    replies = _together(24, lambda i: cluster.call(cluster.urls[i % 3], "PUT", "/v2/keys/xlock?prevExist=false",
                                                   form(value=i), timeout=30))  # fmt: skip
    assert sorted(r.status for r in replies) == [201] + [412] * 23
    assert all(r.json["errorCode"] == 105 for r in replies if r.status == 412)


def test_v2_in_order_keys_across_members_increase_in_commit_order(cluster: TLSCluster) -> None:
    replies = _together(24, lambda i: cluster.call(cluster.urls[i % 3], "POST", "/v2/keys/fifo", form(value=i),
                                                   timeout=30))  # fmt: skip
    assert all(r.status == 201 for r in replies), [r.text for r in replies if r.status != 201]
    keys = [k for _, k in sorted((r.json["node"]["createdIndex"], r.json["node"]["key"]) for r in replies)]
    assert keys == sorted(keys) and len(set(keys)) == 24
    for url in cluster.urls:
        listed = cluster.call(url, "GET", "/v2/keys/fifo?sorted=true&quorum=true").json["node"]["nodes"]
        assert [n["key"] for n in listed] == keys


def test_v2_watch_on_one_member_sees_every_change_made_on_another(cluster: TLSCluster) -> None:
    start = int(cluster.call(cluster.urls[2], "GET", "/v2/keys/").headers["x-etcd-index"])
    seen: list[str] = []

    def watcher() -> None:
        index = start + 1
        while len(seen) < 15:
            ev = cluster.call(cluster.urls[2], "GET", f"/v2/keys/conf?wait=true&recursive=true&waitIndex={index}",
                              timeout=20).json  # fmt: skip
            seen.append(ev["node"]["value"])
            index = ev["node"]["modifiedIndex"] + 1

    t = threading.Thread(target=watcher)
    t.start()
    for i in range(15):
        cluster.call(cluster.urls[i % 2], "PUT", f"/v2/keys/conf/k{i % 4}", form(value=f"v{i}"))
    t.join(30)
    assert seen == [f"v{i}" for i in range(15)]


def test_v2_ttl_keys_expire_on_the_cluster(cluster: TLSCluster) -> None:
    r = cluster.call(cluster.urls[1], "PUT", "/v2/keys/session", form(value="s", ttl=1))
    assert r.status == 201 and r.json["node"]["ttl"] == 1
    ev = cluster.call(cluster.urls[0], "GET", "/v2/keys/session?wait=true", timeout=20).json
    assert ev["action"] == "expire" and ev["node"]["key"] == "/session"
    assert cluster.call(cluster.urls[2], "GET", "/v2/keys/session?quorum=true").status == 404

"""Helpers for the HTTP/JSON tests: a raftkv client port in a thread, a real etcd with v2, HTTP calls.

Every helper is a context manager that stops what it started, also when the test fails.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import ssl
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from real_net.client_port import ClientPort, serve_client_port
from real_net.grpc_server import ServerTLS
from real_net.local_backend import LocalBackend

from ..api.support import RealEtcd, free_port

T = TypeVar("T")

__all__ = ["PortThread", "RealEtcd", "Reply", "V2Etcd", "call", "free_port", "normalize_v3"]


class PortThread:
    """A LocalBackend behind serve_client_port on an event loop in a background thread."""

    def __init__(self, tls: ServerTLS | None = None, port_options: dict[str, Any] | None = None,
                 **backend_options: Any) -> None:  # fmt: skip
        self._tls = tls
        self._port_options = port_options or {}
        self._options = backend_options
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="raftkv-test-port", daemon=True)
        self.backend: LocalBackend
        self.port: ClientPort

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        fut: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return fut.result(timeout)

    @property
    def endpoint(self) -> str:
        return self.port.endpoint

    @property
    def url(self) -> str:
        return self.port.url

    def __enter__(self) -> PortThread:
        self._thread.start()

        async def start() -> None:
            self.backend = LocalBackend(**self._options)
            await self.backend.start()
            self.port = await serve_client_port(self.backend, "127.0.0.1", 0, tls=self._tls, **self._port_options)
            self.backend.set_client_urls((self.port.url,))

        try:
            self.run(start())
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            if hasattr(self, "port"):
                await self.port.stop(grace=0.5)
            if hasattr(self, "backend"):
                await self.backend.stop()

        try:
            self.run(stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()


class V2Etcd(RealEtcd):
    """A real etcd 3.4 with the v2 API on (--enable-v2)."""

    def __init__(self) -> None:
        super().__init__(extra_args=("--enable-v2=true",))

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


def call(base: str, method: str, path: str, body: bytes | str | dict[str, Any] | None = None,
         headers: dict[str, str] | None = None, context: ssl.SSLContext | None = None,
         timeout: float = 10.0) -> Reply:  # fmt: skip
    """One HTTP/1.1 request (a dict body is sent as JSON, a str as a form)."""
    scheme, _, hostport = base.partition("://")
    host, _, port = hostport.rpartition(":")
    conn: http.client.HTTPConnection
    if scheme == "https":
        conn = http.client.HTTPSConnection(host, int(port), timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    hdrs = dict(headers or {})
    data: bytes | None
    if isinstance(body, dict):
        data = json.dumps(body).encode()
    elif isinstance(body, str):
        data = body.encode()
        hdrs.setdefault("Content-Type", "application/x-www-form-urlencoded")
    else:
        data = body
    try:
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        out = Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()
    return out


def normalize_v3(obj: Any, subs: dict[str, str]) -> Any:
    """A v3 JSON body with what differs between two servers replaced: the IDs in `subs`
    (cluster, member, ports), the raft term."""
    text = json.dumps(obj, sort_keys=True)
    for old in sorted(subs, key=len, reverse=True):
        text = text.replace(old, subs[old])
    text = re.sub(r'"raft_term": "\d+"', '"raft_term": "<term>"', text)
    return json.loads(text)

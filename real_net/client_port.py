"""One client port for gRPC and HTTP/1.1 JSON, with or without TLS, as etcd's.

Why: etcd clients are handed one endpoint list, and etcd serves its v3 gRPC
API, the v3 JSON gateway and the v2 keys API on the same port, so
``etcdctl``, ``curl`` and ``python-etcd`` all work against
``--listen-client-urls``. Python's gRPC server cannot share a socket with
anything, so the port is an asyncio listener that looks at each new
connection before reading from it and hands it to the right server:

    plain TCP   the first bytes are peeked (MSG_PEEK, nothing consumed): the
                HTTP/2 client preface ``PRI * HTTP/2.0`` means gRPC, anything
                else is HTTP/1.1;
    TLS         the ClientHello is peeked and its ALPN list read: a client
                that offers ``h2`` and not ``http/1.1`` is a gRPC client
                (grpc-go offers ``h2``, gRPC C core ``grpc-exp,h2``), anything
                else (curl, Python's requests, urllib: ``http/1.1`` or no
                ALPN) is HTTP/1.1, whose TLS this module terminates with ALPN
                ``http/1.1`` only, so curl falls back from h2 to HTTP/1.1.

A gRPC connection is relayed, byte for byte and still encrypted, to a
``grpc.aio`` server that listens on a Unix socket (Linux: in the abstract
namespace; elsewhere in a private 0700 directory), with the same TLS
credentials: the handshake, client-certificate
checks and HTTP/2 all happen in gRPC's C core, so the relay is two
``transport.write`` calls per read and costs no parsing. HTTP/1.1 is served
here: the v3 gateway (real_net/gateway.py) and the v2 keys API
(real_net/v2keys.py) over the same Backend.

HTTP/1.1 itself is real_net/http1.py. Nothing a client sends produces a 500
or takes the port down. HTTP/2 without gRPC (``curl --http2-prior-knowledge``)
is not served, nor a gRPC client over TLS that offers no ALPN.

Entry point: ``serve_client_port`` (the twin of ``grpc_server.start_server``,
returning an object with the same ``url``/``endpoint``/``stop``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import socket
import ssl
import sys
import tempfile
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import grpc

from kv.request_checks import DEFAULT_MAX_TXN_OPS
from real_net import certs
from real_net.backend import Backend
from real_net.gateway import Gateway, HttpRequest, HttpResponse
from real_net.grpc_server import DEFAULT_MAX_REQUEST_BYTES, ServerTLS, add_port, build_server
from real_net.http1 import MAX_HEAD_BYTES, Http1Server, plain_error, unclean_path_redirect
from real_net.v2keys import V2Keys

log = logging.getLogger("raftkv.client_port")

__all__ = ["ClientPort", "serve_client_port", "alpn_protocols"]

HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# How long a new connection may take to send enough bytes to be classified.
CLASSIFY_TIMEOUT = 10.0
# A JSON request of max_request_bytes is at most ~4/3 of it in base64, plus the JSON around it.
BODY_SLACK = 64 * 1024


# --------------------------------------------------------------- TLS ClientHello


def alpn_protocols(data: bytes) -> list[str] | None:
    """The ALPN protocol names a TLS ClientHello offers, from the first bytes of a
    connection (TLS records of type handshake). [] when it offers none; None when
    `data` does not yet hold a whole ClientHello (or is not one)."""
    handshake = bytearray()
    pos = 0
    while pos + 5 <= len(data) and data[pos] == 0x16:
        length = int.from_bytes(data[pos + 3 : pos + 5], "big")
        handshake += data[pos + 5 : pos + 5 + length]
        pos += 5 + length
        if len(handshake) >= 4:
            if handshake[0] != 1:  # not a ClientHello
                return None
            hs_len = int.from_bytes(handshake[1:4], "big")
            if len(handshake) >= 4 + hs_len:
                return _hello_alpn(bytes(handshake[4 : 4 + hs_len]))
    return None


def _hello_alpn(body: bytes) -> list[str] | None:
    try:
        p = 2 + 32  # client_version, random
        p += 1 + body[p]  # session_id
        p += 2 + int.from_bytes(body[p : p + 2], "big")  # cipher_suites
        p += 1 + body[p]  # compression_methods
        if p >= len(body):
            return []
        end = p + 2 + int.from_bytes(body[p : p + 2], "big")
        p += 2
        while p + 4 <= end:
            ext_type = int.from_bytes(body[p : p + 2], "big")
            ext_len = int.from_bytes(body[p + 2 : p + 4], "big")
            if ext_type == 16:  # application_layer_protocol_negotiation (RFC 7301)
                names: list[str] = []
                q, q_end = p + 6, p + 4 + ext_len
                while q < q_end:
                    n = body[q]
                    names.append(body[q + 1 : q + 1 + n].decode("ascii", "replace"))
                    q += 1 + n
                return names
            p += 4 + ext_len
        return []
    except IndexError:
        return None


def is_grpc_alpn(names: list[str]) -> bool:
    return "h2" in names and "http/1.1" not in names


# --------------------------------------------------------------------- relay


class _Relay(asyncio.Protocol):
    """One side of a byte relay; writes what it reads to its peer, with back-pressure."""

    def __init__(self, port: ClientPort) -> None:
        self.port = port
        self.transport: asyncio.Transport | None = None
        self.peer: _Relay | None = None
        self._pending: list[bytes] = []
        self._eof = False
        self._closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.port._relays.add(self)

    def link(self, peer: _Relay) -> None:
        self.peer = peer
        for data in self._pending:
            self._forward(data)
        self._pending.clear()
        if self._eof:
            self.eof_received()
        if self._closed:
            self._close_peer()

    def _forward(self, data: bytes) -> None:
        assert self.peer is not None and self.peer.transport is not None
        self.peer.transport.write(data)

    def data_received(self, data: bytes) -> None:
        if self.peer is None:
            self._pending.append(data)
        else:
            self.peer.transport.write(data)  # type: ignore[union-attr]

    def eof_received(self) -> bool:
        self._eof = True
        peer = self.peer
        if peer is not None and peer.transport is not None and peer.transport.can_write_eof():
            with contextlib.suppress(OSError, RuntimeError):
                peer.transport.write_eof()
        return True  # keep the other direction open (half-close)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self.port._relays.discard(self)
        self._close_peer()

    def _close_peer(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


# ------------------------------------------------------------------ the port


class ClientPort:
    """A running client port (gRPC + HTTP/1.1); ``port`` is the bound port. Same
    surface as grpc_server.ClientAPIServer: ``endpoint``, ``url``, ``stop``."""

    def __init__(
        self,
        *,
        listener: socket.socket,
        grpc_server: grpc.aio.Server | None,
        grpc_path: str,
        tmpdir: str | None,
        gateway: Gateway,
        v2: V2Keys | None,
        tls: ServerTLS | None,
        max_body_bytes: int,
    ) -> None:
        self._listener = listener
        self._grpc = grpc_server
        self._grpc_path = grpc_path
        self._tmpdir = tmpdir
        self.gateway = gateway
        self.v2 = v2
        self._tls = tls
        self._ssl: ssl.SSLContext | None = None
        if tls is not None:
            ctx = certs.client_server_context(tls.cert_file, tls.key_file, tls.trusted_ca_file, tls.client_cert_auth)
            ctx.set_alpn_protocols(["http/1.1"])
            self._ssl = ctx
        self._http = Http1Server(self._dispatch, max_body_bytes)
        sockname = listener.getsockname()
        self.host: str = sockname[0]
        self.port: int = sockname[1]
        self.tls = tls is not None
        self._relays: set[_Relay] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._accept_task: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()
        self.connections = {"grpc": 0, "http": 0}  # counts, for tests and logs

    @property
    def endpoint(self) -> str:
        """host:port, the form etcdctl's --endpoints takes."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.endpoint}"

    def start(self) -> None:
        self._accept_task = asyncio.get_running_loop().create_task(self._accept_loop(), name="client-port-accept")

    async def stop(self, grace: float | None = 1.0) -> None:
        """Stop accepting connections; gRPC calls in flight get `grace` seconds; HTTP
        requests and streams in flight are cancelled and their connections closed."""
        if self._accept_task is not None:
            self._accept_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accept_task
            self._accept_task = None
        self._listener.close()
        if self._grpc is not None:
            await self._grpc.stop(grace)
        for relay in list(self._relays):
            relay.close()
        for task in list(self._tasks):
            task.cancel()
        for writer in list(self._writers):
            writer.close()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.v2 is not None:
            await self.v2.close()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
        self._stopped.set()

    async def wait_for_termination(self) -> None:
        await self._stopped.wait()

    # ----------------------------------------------------------- accepting

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, _ = await loop.sock_accept(self._listener)
            except asyncio.CancelledError:
                raise
            except OSError as e:  # EMFILE and the like: keep serving the others
                log.warning("client port: accept failed: %s", e)
                await asyncio.sleep(0.1)
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._spawn(self._connection(sock))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connection(self, sock: socket.socket) -> None:
        try:
            kind = await asyncio.wait_for(self._classify(sock), CLASSIFY_TIMEOUT)
        except (TimeoutError, OSError):
            sock.close()
            return
        try:
            if kind == "grpc" and self._grpc is None:
                sock.close()  # an HTTP-only port (etcd's --listen-client-http-urls)
            elif kind == "grpc":
                self.connections["grpc"] += 1
                await self._relay(sock)
            elif kind == "http":
                self.connections["http"] += 1
                await self._serve_http(sock)
            elif kind == "plain-on-tls":
                # What Go's TLS server answers an HTTP request on an HTTPS port.
                with contextlib.suppress(OSError):
                    sock.send(b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
                sock.close()
            else:
                sock.close()
        except (OSError, ssl.SSLError, ConnectionError) as e:
            log.debug("client port: connection ended: %s", e)
            sock.close()

    async def _classify(self, sock: socket.socket) -> str:
        """'grpc', 'http', 'plain-on-tls' or 'closed', from peeked bytes only."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = sock.recv(16 * 1024 + 5 if self._tls else len(HTTP2_PREFACE), socket.MSG_PEEK)
            except BlockingIOError:
                data = None
            if data == b"":
                return "closed"
            if data is not None:
                kind = self._kind(data)
                if kind is not None:
                    return kind
                await asyncio.sleep(0.002)  # a partial hello: more bytes are on their way
                continue
            readable = loop.create_future()
            loop.add_reader(sock.fileno(), readable.set_result, None)
            try:
                await readable
            finally:
                loop.remove_reader(sock.fileno())

    def _kind(self, data: bytes) -> str | None:
        if self._tls is None:
            n = min(len(data), len(HTTP2_PREFACE))
            if data[:n] != HTTP2_PREFACE[:n]:
                return "http"
            return "grpc" if n == len(HTTP2_PREFACE) else None
        if data[0] != 0x16:
            return "plain-on-tls"
        names = alpn_protocols(data)
        if names is None:
            # Not a whole ClientHello yet; a record header that cannot be one is HTTP's TLS to refuse.
            return None if len(data) < 16 * 1024 + 5 else "http"
        return "grpc" if is_grpc_alpn(names) else "http"

    # -------------------------------------------------------------- gRPC relay

    async def _relay(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        up_transport, upstream = await loop.create_unix_connection(lambda: _Relay(self), self._grpc_path)
        try:
            _, downstream = await loop.connect_accepted_socket(lambda: _Relay(self), sock)
        except BaseException:
            up_transport.close()
            raise
        downstream.link(upstream)
        upstream.link(downstream)

    # ---------------------------------------------------------------- HTTP/1.1

    async def _serve_http(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=MAX_HEAD_BYTES, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport, _ = await loop.connect_accepted_socket(
            lambda: protocol, sock, ssl=self._ssl, ssl_handshake_timeout=CLASSIFY_TIMEOUT if self._ssl else None
        )
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        self._writers.add(writer)
        try:
            await self._http.serve_connection(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _dispatch(self, req: HttpRequest) -> HttpResponse:
        redirect = unclean_path_redirect(req)
        if redirect is not None:
            return redirect
        resp = await self.gateway.handle(req)
        if resp is None and self.v2 is not None:
            resp = await self.v2.handle(req)
        if resp is None:
            resp = plain_error(404, "404 page not found")
        return resp


async def serve_client_port(
    backend: Backend,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    tls: ServerTLS | None = None,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    max_txn_ops: int = DEFAULT_MAX_TXN_OPS,
    enable_v2: bool = True,
    serve_grpc: bool = True,
    max_body_bytes: int | None = None,
) -> ClientPort:
    """Serve etcd's client API for `backend` on host:port (0 = an ephemeral port) on
    the running event loop: v3 gRPC, the v3 JSON gateway, ``/version``, ``/health`` and,
    with `enable_v2`, the v2 keys API; with `tls`, only over TLS. Raises OSError if it
    cannot bind. Stop it with ``await port.stop()``.

    With ``serve_grpc=False`` the port serves HTTP/1.1 only (etcd 3.5's
    ``--listen-client-http-urls``): gRPC then gets a port of its own from
    ``grpc_server.start_server`` and pays nothing for the relay."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(1024)
        listener.setblocking(False)
    except OSError as e:
        listener.close()
        raise OSError(f"cannot listen on {host}:{port}: {e}") from None
    tmpdir: str | None = None
    grpc_path = ""
    server: grpc.aio.Server | None = None
    if serve_grpc:
        if sys.platform == "linux":
            # An abstract socket: nothing on disk to leave behind if the process dies. It has
            # no file permissions, and needs none: it asks for the same TLS (and client
            # certificate) as the public port, and without TLS the public port is open anyway.
            name = f"raftkv-grpc-{os.getpid()}-{secrets.token_hex(8)}"
            grpc_path, grpc_address = "\0" + name, f"unix-abstract:{name}"
        else:
            tmpdir = tempfile.mkdtemp(prefix="raftkv-grpc-")
            os.chmod(tmpdir, 0o700)  # only this user may reach the gRPC server behind the port
            grpc_path = str(Path(tmpdir) / "grpc.sock")
            grpc_address = f"unix:{grpc_path}"
        server = build_server(backend, max_request_bytes=max_request_bytes, max_txn_ops=max_txn_ops)
        try:
            add_port(server, grpc_address, tls)
            await server.start()
        except BaseException:
            listener.close()
            if tmpdir is not None:
                shutil.rmtree(tmpdir, ignore_errors=True)
            raise
    gateway = Gateway(backend, max_request_bytes=max_request_bytes, max_txn_ops=max_txn_ops)
    v2 = V2Keys(backend) if enable_v2 else None
    body_limit = max_body_bytes if max_body_bytes is not None else 2 * max_request_bytes + BODY_SLACK
    client_port = ClientPort(
        listener=listener, grpc_server=server, grpc_path=grpc_path, tmpdir=tmpdir, gateway=gateway, v2=v2,
        tls=tls, max_body_bytes=body_limit,
    )  # fmt: skip
    client_port.start()
    return client_port

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

HTTP/1.1 as served: keep-alive (``Connection: close`` and HTTP/1.0 honoured),
``Content-Length`` and chunked request bodies, ``Expect: 100-continue``
answered with ``100 Continue`` before the body is read (or with the final
status when the body would be refused), bodies up to ``max_body_bytes``
(larger: 413 with an etcd-style JSON error, without reading the body),
request heads up to 64 KiB (431), streamed responses (watches, long polls)
chunked, with the connection closed after them; a client that goes away
ends its stream. A malformed request gets a 400 and the connection is
closed; nothing a client sends produces a 500 or takes the port down.
HTTP/2 without gRPC (``curl --http2-prior-knowledge``) is not served.

Entry point: ``serve_client_port`` (the twin of ``grpc_server.start_server``,
returning an object with the same ``url``/``endpoint``/``stop``).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import html
import logging
import os
import secrets
import shutil
import socket
import ssl
import sys
import tempfile
import urllib.parse
from collections.abc import Coroutine
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

import grpc

from kv.mvcc import DEFAULT_MAX_TXN_OPS
from real_net import certs
from real_net.backend import Backend
from real_net.gateway import CORS_HEADERS, Gateway, HttpRequest, HttpResponse, error_response
from real_net.grpc_server import DEFAULT_MAX_REQUEST_BYTES, ServerTLS, add_port, build_server
from real_net.v2keys import V2Keys

log = logging.getLogger("raftkv.client_port")

__all__ = ["ClientPort", "serve_client_port", "alpn_protocols"]

HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 100
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


# ------------------------------------------------------------------ HTTP/1.1


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _http_date() -> str:
    return email.utils.formatdate(usegmt=True)


def _head(status: int, headers: list[tuple[str, str]], extra: list[tuple[str, str]]) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Status"
    lines = [f"HTTP/1.1 {status} {phrase}"]
    lines += [f"{k}: {v}" for k, v in headers]
    lines.append(f"Date: {_http_date()}")
    lines += [f"{k}: {v}" for k, v in extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _plain_error(status: int, message: str) -> HttpResponse:
    return HttpResponse(
        status,
        [*CORS_HEADERS, ("Content-Type", "text/plain; charset=utf-8")],
        (message + "\n").encode(),
    )


def _clean_path(p: str) -> str:
    """Go's ServeMux cleanPath: path.Clean, keeping one trailing slash."""
    if not p.startswith("/"):
        p = "/" + p
    parts: list[str] = []
    for seg in p.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if parts:
                parts.pop()
        else:
            parts.append(seg)
    clean = "/" + "/".join(parts)
    if p.endswith("/") and clean != "/":
        clean += "/"
    return clean


def _unclean_path_redirect(req: HttpRequest) -> HttpResponse | None:
    """etcd's handlers sit behind Go's ServeMux, which answers a path that is not clean
    ("//", "/./", "/../", after %-decoding) with a 301 to the clean one."""
    decoded = urllib.parse.unquote(req.path, errors="replace")
    clean = _clean_path(decoded)
    if clean == decoded:
        return None
    location = urllib.parse.quote(clean, safe="/:@!$&'()*+,;=") + (f"?{req.query}" if req.query else "")
    headers = [*CORS_HEADERS, ("Location", location)]
    body = b""
    if req.method in ("GET", "HEAD"):
        headers.append(("Content-Type", "text/html; charset=utf-8"))
        body = f'<a href="{html.escape(location)}">Moved Permanently</a>.\n\n'.encode()
    return HttpResponse(301, headers, body)


# ------------------------------------------------------------------ the port


@dataclass(frozen=True, slots=True)
class _Limits:
    max_body_bytes: int


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
        self._limits = _Limits(max_body_bytes)
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
            await self._http_loop(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _http_loop(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                req, keep_alive = await self._read_request(reader, writer)
            except _BadRequest as e:
                await self._write(writer, error_response(grpc.StatusCode.INVALID_ARGUMENT, e.message, status=e.status),
                                  head_only=False, keep_alive=False)  # fmt: skip
                return
            if req is None:
                return
            try:
                resp = await self._dispatch(req)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug, not bad input: answer, log, keep serving
                log.exception("client port: %s %s failed", req.method, req.path)
                resp = error_response(grpc.StatusCode.INTERNAL, "raftkv: internal error")
            if resp.stream is not None:
                await self._write_stream(reader, writer, resp, head_only=req.method == "HEAD")
                return
            await self._write(writer, resp, head_only=req.method == "HEAD", keep_alive=keep_alive)
            if not keep_alive:
                return

    async def _dispatch(self, req: HttpRequest) -> HttpResponse:
        redirect = _unclean_path_redirect(req)
        if redirect is not None:
            return redirect
        resp = await self.gateway.handle(req)
        if resp is None and self.v2 is not None:
            resp = await self.v2.handle(req)
        if resp is None:
            resp = _plain_error(404, "404 page not found")
        return resp

    async def _read_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[HttpRequest | None, bool]:
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as e:
            if e.partial.strip():
                raise _BadRequest(400, "malformed HTTP request") from None
            return None, False
        except asyncio.LimitOverrunError:
            raise _BadRequest(431, "request header fields too large") from None
        lines = raw[:-4].decode("latin-1").split("\r\n")
        while lines and not lines[0]:
            lines.pop(0)  # RFC 9112: ignore empty lines before a request line
        if not lines:
            raise _BadRequest(400, "malformed HTTP request")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[0].isalpha():
            raise _BadRequest(400, f"malformed HTTP request {lines[0][:80]!r}")
        method, target, version = parts
        if len(lines) - 1 > MAX_HEADERS:
            raise _BadRequest(431, "too many header fields")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise _BadRequest(400, f"malformed header line {line[:80]!r}")
            key = name.lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        connection = headers.get("connection", "").lower()
        keep_alive = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
        path, _, query = target.partition("?")
        body = await self._read_body(reader, writer, headers)
        return HttpRequest(method=method, path=path, query=query, headers=headers, body=body), keep_alive

    async def _read_body(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, headers: dict[str, str]
    ) -> bytes:
        limit = self._limits.max_body_bytes
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = 0
        if not chunked and "content-length" in headers:
            text = headers["content-length"]
            if not text.isdigit():
                raise _BadRequest(400, f"bad Content-Length {text[:40]!r}")
            length = int(text)
            if length > limit:
                raise _BadRequest(413, f"http: request body too large ({length} bytes, at most {limit})")
        if headers.get("expect", "").lower() == "100-continue" and (chunked or length > 0):
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()
        if not chunked:
            return await reader.readexactly(length) if length else b""
        body = bytearray()
        while True:
            try:
                size_line = await reader.readuntil(b"\r\n")
            except (asyncio.LimitOverrunError, asyncio.IncompleteReadError):
                raise _BadRequest(400, "malformed chunked body") from None
            size_text = size_line[:-2].split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise _BadRequest(400, "malformed chunk size") from None
            if size == 0:
                # Trailers, up to the empty line.
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                return bytes(body)
            if len(body) + size > limit:
                raise _BadRequest(413, f"http: request body too large (more than {limit} bytes)")
            body += await reader.readexactly(size)
            if await reader.readexactly(2) != b"\r\n":
                raise _BadRequest(400, "malformed chunked body")

    async def _write(self, writer: asyncio.StreamWriter, resp: HttpResponse, *, head_only: bool, keep_alive: bool) -> None:
        extra = [("Content-Length", str(len(resp.body)))]
        if not keep_alive:
            extra.append(("Connection", "close"))
        writer.write(_head(resp.status, resp.headers, extra) + (b"" if head_only else resp.body))
        await writer.drain()

    async def _write_stream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, resp: HttpResponse, *, head_only: bool
    ) -> None:
        assert resp.stream is not None
        stream = resp.stream

        async def pump() -> None:
            writer.write(_head(resp.status, resp.headers, [("Transfer-Encoding", "chunked"), ("Connection", "close")]))
            await writer.drain()
            async for chunk in stream:
                if chunk and not head_only:
                    writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()

        # The client going away (EOF or reset) ends the stream; so does the stream ending.
        pumping = asyncio.ensure_future(pump())
        gone = asyncio.ensure_future(reader.read(64 * 1024))
        try:
            done, _ = await asyncio.wait({pumping, gone}, return_when=asyncio.FIRST_COMPLETED)
            if pumping in done:
                pumping.result()
        finally:
            for task in (pumping, gone):
                task.cancel()
            await asyncio.gather(pumping, gone, return_exceptions=True)
            with contextlib.suppress(Exception):
                await stream.aclose()  # releases the watch behind it, iterated or not


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

"""HTTP/1.1 as etcd's client port speaks it: requests in, whole or streamed responses out.

Why a module of its own: real_net/client_port.py decides per connection who
serves it; this is what serves an HTTP/1.1 connection, as Go's net/http does
for etcd's handlers, so curl, python-etcd and etcd3gw see what they see
against etcd. It knows nothing of the v3 or v2 APIs: each request goes to a
``dispatch`` callable (the port's gateway and v2 faces).

What is served: keep-alive (``Connection: close`` and HTTP/1.0 honoured),
``Content-Length`` and chunked request bodies, ``Expect: 100-continue``
answered with ``100 Continue`` before the body is read (or with the final
status when the body would be refused), bodies up to ``max_body_bytes``
(larger: 413 with an etcd-style JSON error, the body unread), request heads up
to 64 KiB (431), HEAD, Go's ServeMux 301 for unclean paths, and streamed
responses (watches, long polls) chunked, the connection closed after them; a
client that goes away ends its stream and releases what it held. A malformed
request gets a 400 and the connection is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import html
import logging
import urllib.parse
from collections.abc import Awaitable, Callable
from http import HTTPStatus

import grpc

from real_net.gateway import CORS_HEADERS, HttpRequest, HttpResponse, error_response

__all__ = ["MAX_HEAD_BYTES", "Http1Server", "plain_error", "unclean_path_redirect"]

_log = logging.getLogger("raftkv.http1")

MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 100

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


def plain_error(status: int, message: str) -> HttpResponse:
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


def unclean_path_redirect(req: HttpRequest) -> HttpResponse | None:
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


class Http1Server:
    """Serves HTTP/1.1 connections; each request is answered by `dispatch`."""

    def __init__(self, dispatch: Callable[[HttpRequest], Awaitable[HttpResponse]], max_body_bytes: int) -> None:
        self._dispatch = dispatch
        self.max_body_bytes = max_body_bytes

    async def serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer requests on one connection until it closes, a request asks to close it,
        a streamed response ends or a request is malformed (400 and close)."""
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
                _log.exception("client port: %s %s failed", req.method, req.path)
                resp = error_response(grpc.StatusCode.INTERNAL, "raftkv: internal error")
            if resp.stream is not None:
                await self._write_stream(reader, writer, resp, head_only=req.method == "HEAD")
                return
            await self._write(writer, resp, head_only=req.method == "HEAD", keep_alive=keep_alive)
            if not keep_alive:
                return

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
        limit = self.max_body_bytes
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

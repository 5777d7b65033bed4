"""A minimal etcd v3 client over real_net's generated stubs, for raftkv's own tools.

Why not a client library from the registry: ``cluster`` (waiting for its
members), ``bench`` and the fault tests must talk to raftkv *and* to a real
etcd with the same code, need only a handful of calls, and must not add a
dependency. Everything here is plain grpcio with the stubs in
``real_net.proto``: an endpoint URL decides TLS (``https://``) or not
(``http://``), and the CA / client certificate are etcdctl's
``--cacert/--cert/--key``.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc import aio

from real_net.proto import rpc_pb2 as pb
from real_net.proto import rpc_pb2_grpc as pb_grpc

# Large enough for any response a member sends (range results, snapshots of keys).
_OPTIONS: list[tuple[str, Any]] = [("grpc.max_receive_message_length", 2**31 - 1)]


@dataclass(frozen=True, slots=True)
class ClientTLS:
    """etcdctl's --cacert, --cert, --key (PEM files); cert/key may be None."""

    ca: Path
    cert: Path | None = None
    key: Path | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=Path(self.ca).read_bytes(),
            private_key=Path(self.key).read_bytes() if self.key is not None else None,
            certificate_chain=Path(self.cert).read_bytes() if self.cert is not None else None,
        )


def target_of(url: str) -> tuple[str, bool]:
    """("host:port", uses TLS) for an endpoint URL; a bare host:port means plain."""
    if "://" not in url:
        return url, False
    u = urllib.parse.urlsplit(url)
    if u.scheme not in ("http", "https"):
        raise ValueError(f"endpoint must be http:// or https://, got {url!r}")
    return u.netloc, u.scheme == "https"


def channel(url: str, tls: ClientTLS | None = None, options: list[tuple[str, Any]] | None = None) -> grpc.Channel:
    """A blocking channel to one endpoint."""
    target, secure = target_of(url)
    opts = _OPTIONS + (options or [])
    if secure:
        if tls is None:
            raise ValueError(f"{url} uses TLS: give the CA (and client certificate)")
        return grpc.secure_channel(target, tls.credentials(), options=opts)
    return grpc.insecure_channel(target, options=opts)


def aio_channel(url: str, tls: ClientTLS | None = None, options: list[tuple[str, Any]] | None = None) -> aio.Channel:
    """An asyncio channel to one endpoint (create it on the loop that will use it)."""
    target, secure = target_of(url)
    opts = _OPTIONS + (options or [])
    if secure:
        if tls is None:
            raise ValueError(f"{url} uses TLS: give the CA (and client certificate)")
        return aio.secure_channel(target, tls.credentials(), options=opts)
    return aio.insecure_channel(target, options=opts)


class Stubs:
    """Every etcd service on one channel (blocking or asyncio, as the channel is)."""

    def __init__(self, ch: grpc.Channel | aio.Channel) -> None:
        self.channel = ch
        self.kv = pb_grpc.KVStub(ch)
        self.watch = pb_grpc.WatchStub(ch)
        self.lease = pb_grpc.LeaseStub(ch)
        self.cluster = pb_grpc.ClusterStub(ch)
        self.maintenance = pb_grpc.MaintenanceStub(ch)


def status(url: str, tls: ClientTLS | None = None, timeout: float = 2.0) -> pb.StatusResponse:
    """Maintenance.Status of one endpoint (raises grpc.RpcError when it does not answer)."""
    with channel(url, tls) as ch:
        resp: pb.StatusResponse = Stubs(ch).maintenance.Status(pb.StatusRequest(), timeout=timeout)
        return resp


__all__ = ["ClientTLS", "Stubs", "aio_channel", "channel", "status", "target_of"]

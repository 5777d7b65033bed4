"""One raftkv member as a process: disk, Raft member, peer transport and etcd's client API, composed.

Why a module of its own: every other real_net module is one part (``wal`` and
``disk_storage`` keep the log, ``transport`` carries Raft messages, ``node``
drives ``kv.member.Member`` on asyncio, ``grpc_server`` speaks etcd's v3 API).
This is the wiring a user runs (``python -m real_net serve``), with etcd's
rules for what a member is:

* **Identity, as etcd derives it.** A founding member's ID is a hash of its
  peer URLs and ``--initial-cluster-token`` (etcd's ``computeMemberID``: SHA-1
  of the sorted URLs joined, then the token; the first 8 bytes, big-endian),
  and the cluster ID a hash of the sorted member IDs (``RaftCluster.genID``:
  SHA-1 of the IDs as 8-byte big-endian words). So a raftkv cluster started
  with the same URLs and token as an etcd cluster gets the same IDs. A member
  joining a running cluster (``--initial-cluster-state=existing``) cannot
  derive its ID (MemberAdd chose it): it asks a peer for the membership
  (``transport.fetch_membership``, etcd's ``GetClusterFromRemotePeers``) and
  finds itself by its peer URL.
* **Restart reuses the disk.** The identity is written to
  ``<data-dir>/member/identity.json`` before the first log entry, and on a
  restart it wins over the flags (etcd likewise ignores ``--initial-cluster``
  once the WAL holds the member's metadata). The log is ``<data-dir>/member/``
  ``wal`` and ``snap``, as etcd's layout.
* **Membership follows the log.** The peers the transport talks to are the
  members the state machine lists (``sm.members``): a member added through
  MemberAdd is dialed once the change applies, a removed one is dropped. A
  member that learns it was removed (it applied its removal, or a peer says
  so) shuts down, as etcd's does ("the member has been permanently removed").
* **One client port, as etcd's.** By default it is ``real_net.client_port``:
  v3 gRPC, the v3 JSON gateway and the v2 keys API on the same socket
  (``--client-api grpc`` serves gRPC alone, without that port's relay).
* **TLS by URL scheme.** ``https://`` client URLs serve TLS with
  ``--cert-file``/``--key-file`` (and with ``--client-cert-auth`` require a
  client certificate signed by ``--trusted-ca-file``); ``http://`` serves
  plain gRPC. ``https://`` peer URLs mean mutual TLS with the peer files
  (defaulting to the client ones), where a peer without a certificate signed
  by the peer CA is refused; ``http://`` peers are plain TCP (tests only).
* **Clean shutdown** (SIGTERM, SIGINT): stop accepting client calls (calls in
  flight get a short grace), stop the node (pending requests fail), close the
  transport, close the storage (sync, release the directory lock).
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import logging
import os
import random
import signal
import struct
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kv import api
from kv.errors import ConfigError, CorruptRecord
from kv.member import Member, MemberConfig
from kv.raft.config import RaftConfig
from real_net import certs
from real_net.client_port import ClientPort, serve_client_port
from real_net.disk_storage import DiskStorage
from real_net.grpc_server import DEFAULT_MAX_REQUEST_BYTES, ClientAPIServer, ServerTLS, start_server
from real_net.node import MemberNode
from real_net.transport import Address, Transport, fetch_membership

log = logging.getLogger("raftkv.server")

DEFAULT_TOKEN = "etcd-cluster"  # etcd's --initial-cluster-token default
IDENTITY_FILE = "identity.json"
MEMBERSHIP_POLL = 0.1  # seconds between comparisons of the log's membership with the transport's peers
JOIN_TIMEOUT = 30.0  # how long a joining member keeps asking its peers for the membership


# --------------------------------------------------------------------- IDs


def member_id_from(peer_urls: Iterable[str], token: str) -> int:
    """A founding member's ID as etcd computes it (membership.computeMemberID without a time)."""
    joined = "".join(sorted(peer_urls)) + token
    return int.from_bytes(hashlib.sha1(joined.encode()).digest()[:8], "big")


def cluster_id_from(member_ids: Iterable[int]) -> int:
    """The cluster ID as etcd computes it from the founding members (RaftCluster.genID)."""
    ids = sorted(member_ids)
    packed = struct.pack(f">{len(ids)}Q", *ids)
    return int.from_bytes(hashlib.sha1(packed).digest()[:8], "big")


# ------------------------------------------------------------------- config


def parse_url(url: str, what: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s)://host:port URL; ConfigError naming `what` otherwise."""
    u = urllib.parse.urlsplit(url)
    if u.scheme not in ("http", "https"):
        raise ConfigError(f"{what} must be an http:// or https:// URL, got {url!r}")
    try:
        port = u.port
    except ValueError:
        raise ConfigError(f"{what} has a bad port: {url!r}") from None
    if not u.hostname or port is None:
        raise ConfigError(f"{what} must name a host and a port, got {url!r}")
    if u.path not in ("", "/"):
        raise ConfigError(f"{what} must not have a path, got {url!r}")
    return u.scheme, u.hostname, port


def parse_initial_cluster(text: str) -> tuple[tuple[str, str], ...]:
    """etcd's --initial-cluster: ``name=URL,name=URL,...`` -> ((name, url), ...), in order."""
    out: list[tuple[str, str]] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, url = part.partition("=")
        if not sep or not name or not url:
            raise ConfigError(f"initial-cluster entries must be name=URL, got {part!r}")
        parse_url(url, f"initial-cluster URL of {name!r}")
        if any(n == name for n, _ in out):
            raise ConfigError(f"initial-cluster names {name!r} twice (one peer URL per member)")
        out.append((name, url))
    if not out:
        raise ConfigError("initial-cluster must name at least one member")
    return tuple(out)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """One member's settings, named after etcd's flags (times in seconds)."""

    name: str
    data_dir: Path
    listen_client_url: str
    listen_peer_url: str
    initial_cluster: tuple[tuple[str, str], ...]  # (name, peer URL) of every member
    advertise_client_url: str = ""  # default: listen_client_url
    initial_advertise_peer_url: str = ""  # default: listen_peer_url
    initial_cluster_state: str = "new"  # or "existing": join a running cluster
    initial_cluster_token: str = DEFAULT_TOKEN
    cert_file: Path | None = None
    key_file: Path | None = None
    trusted_ca_file: Path | None = None
    client_cert_auth: bool = False
    peer_cert_file: Path | None = None  # default: cert_file
    peer_key_file: Path | None = None  # default: key_file
    peer_trusted_ca_file: Path | None = None  # default: trusted_ca_file
    election_timeout: float = 1.0  # etcd: 1000 ms; Raft draws timeouts from [t, 2t) as etcd does
    heartbeat_interval: float = 0.1  # etcd: 100 ms
    snapshot_count: int = 100_000
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    request_timeout: float = 0.0  # 0: etcd's 5 s + 2 x election timeout
    unsafe_no_fsync: bool = False
    # "all": etcd's one client port (v3 gRPC, the v3 JSON gateway and the v2 keys API,
    # real_net.client_port); "grpc": the gRPC server alone (no relay: less CPU per request).
    client_api: str = "all"

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("name must not be empty")
        if not self.advertise_client_url:
            object.__setattr__(self, "advertise_client_url", self.listen_client_url)
        if not self.initial_advertise_peer_url:
            object.__setattr__(self, "initial_advertise_peer_url", self.listen_peer_url)
        client_scheme, _, _ = parse_url(self.listen_client_url, "listen-client-urls")
        parse_url(self.advertise_client_url, "advertise-client-urls")
        peer_scheme, _, _ = parse_url(self.listen_peer_url, "listen-peer-urls")
        parse_url(self.initial_advertise_peer_url, "initial-advertise-peer-urls")
        if self.initial_cluster_state not in ("new", "existing"):
            raise ConfigError(f"initial-cluster-state must be new or existing, got {self.initial_cluster_state!r}")
        urls = dict(self.initial_cluster)
        if self.name not in urls:
            raise ConfigError(f"initial-cluster must include this member's name {self.name!r}")
        if urls[self.name] != self.initial_advertise_peer_url:
            raise ConfigError(
                f"initial-cluster has {self.name}={urls[self.name]} but initial-advertise-peer-urls is "
                f"{self.initial_advertise_peer_url} (they must match)"
            )
        if client_scheme == "https" and (self.cert_file is None or self.key_file is None):
            raise ConfigError("an https client URL needs cert-file and key-file")
        if self.client_cert_auth and self.trusted_ca_file is None:
            raise ConfigError("client-cert-auth needs trusted-ca-file")
        if peer_scheme == "https" and (self.peer_cert is None or self.peer_key is None or self.peer_ca is None):
            raise ConfigError("https peer URLs need peer-cert-file, peer-key-file and peer-trusted-ca-file "
                              "(or cert-file, key-file and trusted-ca-file)")  # fmt: skip
        if not self.heartbeat_interval > 0:
            raise ConfigError("heartbeat-interval must be greater than 0")
        if not self.election_timeout >= 5 * self.heartbeat_interval:
            # etcd: "election-timeout should be at least as 5 times as heartbeat-interval"
            raise ConfigError("election-timeout must be at least 5 times heartbeat-interval")
        if self.snapshot_count <= 0:
            raise ConfigError("snapshot-count must be greater than 0")
        if self.client_api not in ("all", "grpc"):
            raise ConfigError(f"client-api must be all or grpc, got {self.client_api!r}")
        if self.request_timeout == 0:
            object.__setattr__(self, "request_timeout", 5.0 + 2 * self.election_timeout)

    @property
    def peer_cert(self) -> Path | None:
        return self.peer_cert_file or self.cert_file

    @property
    def peer_key(self) -> Path | None:
        return self.peer_key_file or self.key_file

    @property
    def peer_ca(self) -> Path | None:
        return self.peer_trusted_ca_file or self.trusted_ca_file

    @property
    def member_dir(self) -> Path:
        return self.data_dir / "member"


# ----------------------------------------------------------------- identity


@dataclass(frozen=True, slots=True)
class Identity:
    """Who this member is, fixed at its first start and kept beside its log."""

    name: str
    member_id: int
    cluster_id: int
    join: bool  # started with --initial-cluster-state=existing
    members: tuple[api.Member, ...]  # the membership it started with (the Member's initial_members)

    def to_json(self) -> str:
        return json.dumps(
            {
                "name": self.name,
                "member_id": f"{self.member_id:x}",
                "cluster_id": f"{self.cluster_id:x}",
                "join": self.join,
                "members": [
                    {"id": f"{m.ID:x}", "name": m.name, "peer_urls": list(m.peer_urls), "is_learner": m.is_learner}
                    for m in self.members
                ],
            },
            indent=2,
        )

    @classmethod
    def load(cls, path: Path) -> Identity:
        try:
            d = json.loads(path.read_text())
            members = tuple(
                api.Member(ID=int(m["id"], 16), name=str(m["name"]), peer_urls=tuple(m["peer_urls"]),
                           is_learner=bool(m["is_learner"]))
                for m in d["members"]
            )  # fmt: skip
            return cls(str(d["name"]), int(d["member_id"], 16), int(d["cluster_id"], 16), bool(d["join"]), members)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CorruptRecord(f"{path}: cannot read the member identity: {e}") from None

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w") as f:
            f.write(self.to_json() + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def founding_identity(config: ServerConfig) -> Identity:
    return founding_identity_of(config.name, config.initial_cluster, config.initial_cluster_token)


def founding_identity_of(name: str, initial_cluster: tuple[tuple[str, str], ...], token: str) -> Identity:
    """A founding member's identity from --name, --initial-cluster and the token (also what
    ``raftkv snapshot restore`` gives the members of the cluster it makes)."""
    members = tuple(
        api.Member(ID=member_id_from([url], token), name=n, peer_urls=(url,)) for n, url in initial_cluster
    )
    ids = [m.ID for m in members]
    if len(set(ids)) != len(ids):
        raise ConfigError("initial-cluster gives two members the same peer URL")
    me = next(m for m in members if m.name == name)
    return Identity(name, me.ID, cluster_id_from(ids), False, members)


async def joining_identity(config: ServerConfig, client_ssl: Any, timeout: float = JOIN_TIMEOUT) -> Identity:
    """Ask the peers in --initial-cluster (all but this member) for the membership, and
    find this member in it by its peer URL (it must have been added with MemberAdd)."""
    peers = [url for name, url in config.initial_cluster if name != config.name]
    if not peers:
        raise ConfigError("initial-cluster-state=existing needs initial-cluster to name at least one other member")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    errors: list[str] = []
    while True:
        for url in peers:
            _, host, port = parse_url(url, "initial-cluster URL")
            try:
                cluster_id, members = await fetch_membership((host, port), client_ssl, timeout=3.0)
            except (OSError, TimeoutError, CorruptRecord) as e:
                errors.append(f"{url}: {e!r}")
                continue
            for m in members:
                if config.initial_advertise_peer_url in m.peer_urls:
                    return Identity(config.name, m.ID, cluster_id, True, members)
            raise ConfigError(
                f"the cluster at {url} has no member with peer URL {config.initial_advertise_peer_url} "
                "(add it first: etcdctl member add NAME --peer-urls=URL)"
            )
        if loop.time() > deadline:
            raise ConfigError(f"could not fetch the cluster membership from any peer: {'; '.join(errors[-len(peers):])}")
        await asyncio.sleep(0.5)


# ------------------------------------------------------------------- server


class MemberServer:
    """A running member: ``await start()``, then ``await wait()`` until it should end, ``await stop()``."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.storage: DiskStorage | None = None
        self.identity: Identity | None = None
        self.member: Member | None = None
        self.node: MemberNode | None = None
        self.transport: Transport | None = None
        self.client_server: ClientAPIServer | ClientPort | None = None
        self.removed = False
        self._done = asyncio.Event()
        self._poller: asyncio.Task[None] | None = None

    # --- start -------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.config
        cfg.member_dir.mkdir(parents=True, exist_ok=True)
        peer_server_ssl, peer_client_ssl = self._peer_contexts()
        # Opening the storage locks the directory and replays the WAL: a corrupt record in
        # the middle of the log raises CorruptRecord naming the file and offset here.
        storage = DiskStorage(cfg.member_dir, unsafe_no_fsync=cfg.unsafe_no_fsync)
        self.storage = storage
        identity_path = cfg.member_dir / IDENTITY_FILE
        has_data = storage.last_index() > 0 or not storage.snapshot().is_empty
        if identity_path.exists():
            identity = Identity.load(identity_path)
            if identity.name != cfg.name:
                raise ConfigError(f"{cfg.data_dir} belongs to member {identity.name!r}, not {cfg.name!r}")
        elif has_data:
            raise CorruptRecord(f"{identity_path}: missing, but the data dir holds a log")
        else:
            if cfg.initial_cluster_state == "new":
                identity = founding_identity(cfg)
            else:
                identity = await joining_identity(cfg, peer_client_ssl)
            identity.save(identity_path)
        self.identity = identity
        loop = asyncio.get_running_loop()
        raft = RaftConfig(
            id=identity.member_id,
            election_timeout_min=cfg.election_timeout,
            election_timeout_max=2 * cfg.election_timeout,
            heartbeat_interval=cfg.heartbeat_interval,
        )
        member_cfg = MemberConfig(
            raft=raft,
            name=cfg.name,
            cluster_id=identity.cluster_id,
            snapshot_count=cfg.snapshot_count,
            max_request_bytes=cfg.max_request_bytes,
        )
        initial = {m.ID: m for m in identity.members}
        member = Member(member_cfg, storage, random.Random(), loop.time(), initial, join=identity.join)
        self.member = member
        node = MemberNode(
            member, storage, None, client_urls=(cfg.advertise_client_url,), request_timeout=cfg.request_timeout
        )
        self.node = node
        _, peer_host, peer_port = parse_url(cfg.listen_peer_url, "listen-peer-urls")
        transport = Transport(
            identity.member_id,
            self._peer_addresses(),
            server_ssl=peer_server_ssl,
            client_ssl=peer_client_ssl,
            on_message=node.deliver,
            on_unreachable=node.peer_unreachable,
            on_snapshot_status=node.snapshot_status,
            on_removed=self._on_removed,
            membership=lambda: (identity.cluster_id, tuple(member.sm.members.values())),
            is_removed=member.is_removed,
            listen=(peer_host, peer_port),
            cluster_id=identity.cluster_id,
            # A restarted peer is redialed within half a second (a LAN dial is cheap), so it
            # hears from the leader before its election timeout (etcd redials every 100 ms).
            backoff_min=0.05,
            backoff_max=0.5,
        )
        self.transport = transport
        node.transport = transport
        await transport.start()
        node.start()
        self._poller = loop.create_task(self._follow_membership(), name="raftkv-membership")
        scheme, host, port = parse_url(cfg.listen_client_url, "listen-client-urls")
        tls = None
        if scheme == "https":
            assert cfg.cert_file is not None and cfg.key_file is not None
            tls = ServerTLS(cfg.cert_file, cfg.key_file, cfg.trusted_ca_file, cfg.client_cert_auth)
        if cfg.client_api == "grpc":
            self.client_server = await start_server(
                node, host, port, tls=tls, max_request_bytes=cfg.max_request_bytes
            )
        else:
            self.client_server = await serve_client_port(
                node, host, port, tls=tls, max_request_bytes=cfg.max_request_bytes
            )
        log.info(
            "member %s (id %x, cluster %x) serving clients on %s, peers on %s%s",
            cfg.name, identity.member_id, identity.cluster_id, self.client_server.url, cfg.listen_peer_url,
            " (restarted from its data dir)" if has_data else "",
        )  # fmt: skip

    def _peer_contexts(self) -> tuple[Any, Any]:
        cfg = self.config
        scheme, _, _ = parse_url(cfg.listen_peer_url, "listen-peer-urls")
        if scheme != "https":
            return None, None
        assert cfg.peer_cert is not None and cfg.peer_key is not None and cfg.peer_ca is not None
        return (
            certs.peer_server_context(cfg.peer_cert, cfg.peer_key, cfg.peer_ca),
            certs.peer_client_context(cfg.peer_cert, cfg.peer_key, cfg.peer_ca),
        )

    def _peer_addresses(self) -> dict[int, Address]:
        assert self.member is not None
        out: dict[int, Address] = {}
        for mid, m in self.member.sm.members.items():
            if m.peer_urls:
                try:
                    _, host, port = parse_url(m.peer_urls[0], "peer URL")
                except ConfigError:
                    continue
                out[mid] = (host, port)
        return out

    # --- running -----------------------------------------------------------

    async def _follow_membership(self) -> None:
        """Keep the transport's peers equal to the members the log lists; notice our removal."""
        member, transport = self.member, self.transport
        assert member is not None and transport is not None
        while not self._done.is_set():
            if member.removed:
                self._on_removed()
                return
            wanted = self._peer_addresses()
            for pid, addr in wanted.items():
                transport.add_peer(pid, addr)  # no-op when already there at that address
            for pid in transport.peers():
                if pid not in wanted:
                    log.info("member %x left the cluster; no longer sending to it", pid)
                    transport.remove_peer(pid)
            await asyncio.sleep(MEMBERSHIP_POLL)

    def _on_removed(self) -> None:
        if not self.removed:
            log.error("the member has been permanently removed from the cluster; shutting down")
        self.removed = True
        self._done.set()

    def request_stop(self) -> None:
        self._done.set()

    async def wait(self) -> None:
        await self._done.wait()

    @property
    def client_url(self) -> str:
        assert self.client_server is not None
        return self.client_server.url

    # --- stop --------------------------------------------------------------

    async def stop(self) -> None:
        """Stop accepting, stop the node, close the transport, close the storage (each only
        if it was started, so a failed start is undone by the same call)."""
        self._done.set()
        if self.client_server is not None:
            await self.client_server.stop(grace=0.5)
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
        if self.node is not None:
            await self.node.stop()
            st = self.node.stats
            log.info("served %d requests in %d Readies; %d entries written with %d fsyncs",
                     st.requests, st.readies, st.entries, st.syncs)  # fmt: skip
        if self.transport is not None:
            await self.transport.close()
        if self.storage is not None:
            self.storage.close()


def tune_gc() -> None:
    """Fewer cyclic-GC passes: a member allocates (and frees) objects for every request,
    and its MVCC history holds many long-lived ones, so with CPython's defaults the
    collector runs hundreds of times a second and its full passes over the growing
    history show up as latency spikes. Almost nothing a member allocates is cyclic."""
    gc.collect()
    gc.freeze()  # what start-up allocated (modules, certificates) is never scanned again
    gc.set_threshold(50_000, 20, 100)


async def serve(config: ServerConfig, ready: Sequence[Any] = ()) -> int:
    """Run one member until SIGTERM/SIGINT or its removal; the process exit status."""
    tune_gc()
    server = MemberServer(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.request_stop)
    try:
        await server.start()
        for callback in ready:
            callback(server)
        await server.wait()
        log.info("member %s stopping", config.name)
    finally:
        await server.stop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return 0

"""Real clusters for the tests: raftkv members and etcd members as processes on free ports.

Each cluster is a context manager that kills every process it started (the
whole session of each, with SIGKILL after SIGCONT) when it exits, also when
the test failed, and each member's log is kept in the test's temp dir and
shown when a start fails. The raftkv members are started with exactly the
command line ``raftkv cluster`` records (``real_net.launcher.serve_argv``).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from real_net import certs
from real_net.client import ClientTLS, Stubs, channel
from real_net.launcher import MemberSpec, free_port, serve_argv, wait_ready
from real_net.proto import rpc_pb2 as pb
from ..api.support import Result, etcdctl, require_binary

TOKEN = "raftkv-test"


def read_until(proc: subprocess.Popen[str], marker: str, timeout: float) -> str:
    """stdout of `proc` up to the line holding `marker` (read by a thread: pipes block)."""
    lines: list[str] = []

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if marker in line:
                return

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t.join(timeout)
    out = "".join(lines)
    if t.is_alive() or marker not in out:
        err = proc.stderr.read() if proc.poll() is not None and proc.stderr else ""
        raise AssertionError(f"no {marker!r} within {timeout} s (exit {proc.poll()}): {out}{err}")
    return out


def kill_session(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the member's whole session (it was started with start_new_session)."""
    if proc.poll() is None:
        for sig in (signal.SIGCONT, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:  # pragma: no cover - the kernel owes us this one
        pass


@dataclass
class Node:
    """One member process (raftkv or etcd) and how to start it again."""

    name: str
    client_url: str
    peer_url: str
    data_dir: Path
    log: Path
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return self.client_url

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        assert not self.running, f"{self.name} is already running"
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen(self.argv, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        """kill -9, as a power cut would (the WAL's unsynced tail may be lost)."""
        if self.proc is not None:
            kill_session(self.proc)

    def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM and wait: a clean shutdown. Returns the exit status."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


@dataclass
class Cluster:
    """A set of member processes plus what a client needs to reach them."""

    kind: str  # "raftkv" or "etcd"
    root: Path
    paths: certs.CertPaths
    nodes: dict[str, Node] = field(default_factory=dict)

    @property
    def tls(self) -> ClientTLS:
        return ClientTLS(self.paths.ca, self.paths.client.cert, self.paths.client.key)

    @property
    def tls_args(self) -> tuple[str, ...]:
        p = self.paths
        return ("--cacert", str(p.ca), "--cert", str(p.client.cert), "--key", str(p.client.key))

    def endpoints(self, *names: str) -> str:
        return ",".join(self.nodes[n].client_url for n in (names or tuple(self.nodes)))

    def etcdctl(self, *args: str, on: Sequence[str] = (), stdin: str | None = None, timeout: float = 15.0) -> Result:
        """etcdctl against the named members (default: all running ones)."""
        names = tuple(on) or tuple(n for n, node in self.nodes.items() if node.running)
        return etcdctl(self.endpoints(*names), *args, stdin=stdin, tls=self.tls_args, timeout=timeout)

    def status(self, name: str, timeout: float = 2.0) -> pb.StatusResponse:
        with channel(self.nodes[name].client_url, self.tls) as ch:
            resp: pb.StatusResponse = Stubs(ch).maintenance.Status(pb.StatusRequest(), timeout=timeout)
            return resp

    def name_of(self, member_id: int) -> str:
        for name in self.nodes:
            if self.nodes[name].running:
                try:
                    if self.status(name).header.member_id == member_id:
                        return name
                except grpc.RpcError:
                    continue
        raise LookupError(f"no running member has id {member_id:x}")

    def leader(self, timeout: float = 15.0) -> str:
        """The name of the member every running member agrees leads."""
        deadline = time.monotonic() + timeout
        while True:
            seen: dict[str, int] = {}
            for name, node in self.nodes.items():
                if node.running:
                    try:
                        seen[name] = self.status(name, timeout=1.0).leader
                    except grpc.RpcError:
                        pass
            ids = set(seen.values())
            if len(ids) == 1 and 0 not in ids and len(seen) == sum(n.running for n in self.nodes.values()):
                lead = ids.pop()
                for name in seen:
                    if self.status(name).header.member_id == lead:
                        return name
            if time.monotonic() > deadline:
                raise AssertionError(f"no agreed leader within {timeout} s: {seen}")
            time.sleep(0.05)

    def followers(self) -> list[str]:
        lead = self.leader()
        return [n for n, node in self.nodes.items() if node.running and n != lead]

    def wait_ready(self, names: Sequence[str] = (), timeout: float = 30.0) -> None:
        chosen = [self.nodes[n] for n in (names or self.nodes)]
        specs = [MemberSpec(n.name, n.client_url, n.peer_url, n.data_dir, n.log, n.argv) for n in chosen]
        procs = [n.proc for n in chosen if n.proc is not None]
        wait_ready(specs, self.tls, procs, timeout=timeout)

    def close(self) -> None:
        for node in self.nodes.values():
            node.kill()


@contextmanager
def raftkv_cluster(
    root: Path, names: Sequence[str] = ("n1", "n2", "n3"), *, extra: Sequence[str] = (), spare: Sequence[str] = ()
) -> Iterator[Cluster]:
    """A founding raftkv cluster of `names`, started and ready; certificates also for `spare`
    names (members a test adds later). Every process is killed on exit."""
    root.mkdir(parents=True, exist_ok=True)
    paths = certs.ensure_certs(root / "certs", [*names, *spare])
    cluster = Cluster("raftkv", root, paths)
    urls = {n: (f"https://127.0.0.1:{free_port()}", f"https://127.0.0.1:{free_port()}") for n in names}
    initial = ",".join(f"{n}={urls[n][1]}" for n in names)
    for n in names:
        client, peer = urls[n]
        argv = serve_argv(n, root / n, client, peer, initial, paths, token=TOKEN, extra=extra)
        cluster.nodes[n] = Node(n, client, peer, root / n, root / f"{n}.log", argv)
    try:
        for node in cluster.nodes.values():
            node.start()
        try:
            cluster.wait_ready()
        except RuntimeError as e:
            logs = "\n".join(f"--- {n.name}\n{n.tail()}" for n in cluster.nodes.values())
            raise AssertionError(f"{e}\n{logs}") from None
        yield cluster
    finally:
        cluster.close()


def add_raftkv_node(cluster: Cluster, name: str, initial_cluster: str, extra: Sequence[str] = ()) -> Node:
    """A new member's process (not started) joining `cluster` (--initial-cluster-state existing)."""
    client, peer = f"https://127.0.0.1:{free_port()}", f"https://127.0.0.1:{free_port()}"
    m = re.search(rf"(?:^|,){re.escape(name)}=([^,]+)", initial_cluster)
    if m:
        peer = m.group(1)
    argv = serve_argv(
        name, cluster.root / name, client, peer, initial_cluster, cluster.paths, state="existing", token=TOKEN,
        extra=extra,
    )  # fmt: skip
    node = Node(name, client, peer, cluster.root / name, cluster.root / f"{name}.log", argv)
    cluster.nodes[name] = node
    return node


@contextmanager
def etcd_cluster(root: Path, paths: certs.CertPaths, names: Sequence[str] = ("n1", "n2", "n3")) -> Iterator[Cluster]:
    """Real etcd 3.4 members with the same certificates and layout as a raftkv cluster."""
    binary = require_binary("etcd")
    root.mkdir(parents=True, exist_ok=True)
    cluster = Cluster("etcd", root, paths)
    urls = {n: (f"https://127.0.0.1:{free_port()}", f"https://127.0.0.1:{free_port()}") for n in names}
    initial = ",".join(f"{n}={urls[n][1]}" for n in names)
    for n in names:
        client, peer = urls[n]
        pair = paths.member(n)
        argv = [
            binary, "--name", n, "--data-dir", str(root / n),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", initial, "--initial-cluster-token", TOKEN, "--initial-cluster-state", "new",
            "--cert-file", str(pair.cert), "--key-file", str(pair.key), "--trusted-ca-file", str(paths.ca),
            "--peer-cert-file", str(pair.cert), "--peer-key-file", str(pair.key),
            "--peer-trusted-ca-file", str(paths.ca), "--peer-client-cert-auth",
        ]  # fmt: skip
        cluster.nodes[n] = Node(n, client, peer, root / n, root / f"{n}.log", argv)
    try:
        for node in cluster.nodes.values():
            node.start()
        deadline = time.monotonic() + 30
        while True:
            r = cluster.etcdctl("endpoint", "health")
            if r.returncode == 0:
                break
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {n.name}\n{n.tail()}" for n in cluster.nodes.values())
                raise AssertionError(f"etcd cluster not healthy: {r.text}\n{logs}")
            time.sleep(0.1)
        yield cluster
    finally:
        cluster.close()


def member_ids(cluster: Cluster) -> dict[str, int]:
    """name -> member ID, from `member list -w json`."""
    r = cluster.etcdctl("member", "list", "-w", "json")
    assert r.returncode == 0, r.text
    return {m["name"]: int(m["ID"]) for m in json.loads(r.stdout)["members"] if m.get("name")}

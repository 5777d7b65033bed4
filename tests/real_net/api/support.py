"""Helpers for the client-API tests: a raftkv server in a thread, a real etcd, etcdctl.

Every helper is a context manager that stops what it started, also when the
test fails. The etcd binaries are required, not optional: a missing one fails
the test with the command that installs it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from real_net.grpc_server import ClientAPIServer, ServerTLS, start_server
from real_net.local_backend import LocalBackend

T = TypeVar("T")

INSTALL_HINT = "install them with `apt-get install -y etcd-client etcd-server` (.ci/run does this)"


def require_binary(name: str) -> str:
    """The path of `name`, or a test failure that says how to install it."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is not on PATH; these tests compare raftkv with etcd 3.4: {INSTALL_HINT}")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --------------------------------------------------------------- raftkv server


class ServerThread:
    """A LocalBackend and its gRPC server on an event loop in a background thread, so
    a synchronous test can drive it with blocking clients and subprocesses."""

    def __init__(self, tls: ServerTLS | None = None, **backend_options: Any) -> None:
        self._tls = tls
        self._options = backend_options
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="raftkv-test-server", daemon=True)
        self.backend: LocalBackend
        self.server: ClientAPIServer

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run a coroutine on the server's loop and wait for its result."""
        fut: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return fut.result(timeout)

    def call_soon(self, fn: Callable[[], T]) -> T:
        async def wrapper() -> T:
            return fn()

        return self.run(wrapper())

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    def __enter__(self) -> ServerThread:
        self._thread.start()

        async def start() -> None:
            self.backend = LocalBackend(**self._options)
            await self.backend.start()
            self.server = await start_server(self.backend, "127.0.0.1", 0, tls=self._tls)
            self.backend.set_client_urls((self.server.url,))

        try:
            self.run(start())
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            if hasattr(self, "server"):
                await self.server.stop(grace=0.5)
            if hasattr(self, "backend"):
                await self.backend.stop()

        try:
            self.run(stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()


# ------------------------------------------------------------------- real etcd


@dataclass
class RealEtcd:
    """etcd (from Debian's etcd-server) as one member on ephemeral ports in a temp dir."""

    client_port: int = field(default_factory=free_port)
    peer_port: int = field(default_factory=free_port)
    name: str = "default"
    extra_args: Sequence[str] = ()
    proc: subprocess.Popen[bytes] | None = None
    tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    def __enter__(self) -> RealEtcd:
        binary = require_binary("etcd")
        require_binary("etcdctl")
        self.tmp = tempfile.TemporaryDirectory(prefix="raftkv-etcd-")
        client = f"http://127.0.0.1:{self.client_port}"
        peer = f"http://127.0.0.1:{self.peer_port}"
        log = open(Path(self.tmp.name) / "etcd.log", "wb")
        try:
            self.proc = subprocess.Popen(
                [
                    binary, "--name", self.name, "--data-dir", str(Path(self.tmp.name) / "data"),
                    "--listen-client-urls", client, "--advertise-client-urls", client,
                    "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                    "--initial-cluster", f"{self.name}={peer}", *self.extra_args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        finally:
            log.close()
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait_ready(self, timeout: float = 20.0) -> None:
        # Ready = it has a leader and answers a linearizable read (`endpoint health`).
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"etcd exited with {self.proc.returncode}:\n{self.log()}")
            r = etcdctl(self.endpoint, "endpoint", "health")
            if r.returncode == 0:
                return
            time.sleep(0.05)
        raise RuntimeError(f"etcd not ready after {timeout} s:\n{self.log()}")

    def log(self) -> str:
        assert self.tmp is not None
        return (Path(self.tmp.name) / "etcd.log").read_text(errors="replace")[-4000:]

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            stop_session(self.proc)
        if self.tmp is not None:
            self.tmp.cleanup()


# --------------------------------------------------------------------- etcdctl


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str  # without clientv3's JSON retry logs (timestamps differ run to run)

    @property
    def text(self) -> str:
        return self.stdout + ("\n[stderr]\n" + self.stderr if self.stderr else "") + f"\n[exit {self.returncode}]"


def stop_session(proc: subprocess.Popen[Any]) -> None:
    """Stop a process started with start_new_session, and its children: SIGTERM to the
    session, SIGKILL if it is not gone after 10 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _clean_stderr(raw: str) -> str:
    return "".join(line for line in raw.splitlines(keepends=True) if not line.startswith('{"level":'))


def etcdctl(
    endpoint: str, *args: str, stdin: str | None = None, tls: Sequence[str] = (), timeout: float = 15.0
) -> Result:
    binary = require_binary("etcdctl")
    r = subprocess.run(
        [binary, f"--endpoints={endpoint}", "--dial-timeout=3s", *tls, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "ETCDCTL_API": "3"},
    )
    return Result(r.returncode, r.stdout, _clean_stderr(r.stderr))


@contextmanager
def etcdctl_stream(endpoint: str, *args: str, tls: Sequence[str] = ()) -> Iterator[subprocess.Popen[str]]:
    """A long-running etcdctl (watch); killed on exit."""
    binary = require_binary("etcdctl")
    proc = subprocess.Popen(
        [binary, f"--endpoints={endpoint}", *tls, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "ETCDCTL_API": "3"},
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def read_lines(proc: subprocess.Popen[str], lines: int, timeout: float = 10.0) -> list[str]:
    """Read `lines` lines of output from `proc`, failing after `timeout` seconds."""
    assert proc.stdout is not None
    out: list[str] = []
    result: list[str] = []

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            out.append(line.rstrip("\n"))
            if len(out) >= lines:
                break
        result.extend(out)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise AssertionError(f"wanted {lines} lines of output within {timeout} s, got {len(out)}: {out}")
    return result


# ------------------------------------------------------- etcd from a snapshot


@contextmanager
def restored_etcd(snapshot: Path, root: Path, name: str = "restored") -> Iterator[RealEtcd]:
    """`etcdctl snapshot restore` of `snapshot` into a new data dir under `root`, and a
    real etcd started on it (one member, free ports on 127.0.0.1), stopped on exit also
    when the test fails. Restore output and etcd's log are in the failure message."""
    etcd = require_binary("etcd")
    ctl = require_binary("etcdctl")
    client_port, peer_port = free_port(), free_port()
    client, peer = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
    data_dir = root / f"{name}.etcd"
    r = subprocess.run(
        [ctl, "snapshot", "restore", str(snapshot), "--data-dir", str(data_dir), "--name", name,
         "--initial-cluster", f"{name}={peer}", "--initial-advertise-peer-urls", peer],
        capture_output=True, text=True, timeout=30, env={**os.environ, "ETCDCTL_API": "3"},
    )  # fmt: skip
    if r.returncode != 0:
        raise AssertionError(f"snapshot restore failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    log_path = root / f"{name}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [etcd, "--name", name, "--data-dir", str(data_dir),
             "--listen-client-urls", client, "--advertise-client-urls", client,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"{name}={peer}"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    member = RealEtcd(client_port=client_port, peer_port=peer_port, name=name, proc=proc)
    try:
        deadline = time.monotonic() + 20
        while etcdctl(member.endpoint, "endpoint", "health").returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"restored etcd not healthy:\n{log_path.read_text(errors='replace')[-4000:]}")
            time.sleep(0.05)
        yield member
    finally:
        stop_session(proc)


# ------------------------------------------------ etcdctl side by side


@dataclass
class Target:
    """One server under test and what in its output is its own (IDs, ports)."""

    name: str
    endpoint: str
    peer_port: int
    subs: dict[str, str] = field(default_factory=dict)  # exact text -> placeholder
    vars: dict[str, str] = field(default_factory=dict)  # for "{L1}"-style command arguments

    def learn_identity(self) -> None:
        status = json.loads(etcdctl(self.endpoint, "endpoint", "status", "-w", "json").stdout)[0]["Status"]
        member, cluster = status["header"]["member_id"], status["header"]["cluster_id"]
        self.vars["MEMBER"] = format(member, "x")
        self.vars["PEER"] = f"http://127.0.0.1:{self.peer_port}"
        self.subs.update({str(member): "<member>", format(member, "x"): "<member>",
                          str(cluster): "<cluster>", format(cluster, "x"): "<cluster>",
                          self.endpoint: "<client>", f"127.0.0.1:{self.peer_port}": "<peer>"})  # fmt: skip

    def learn_lease(self, label: str, lease_id_hex: str) -> None:
        self.vars[label] = lease_id_hex
        self.subs[lease_id_hex] = f"<{label}>"
        self.subs[str(int(lease_id_hex, 16))] = f"<{label}>"

    def run(self, *args: str, stdin: str | None = None) -> Result:
        return etcdctl(self.endpoint, *(a.format(**self.vars) for a in args), stdin=stdin)

    def normalize(self, text: str) -> str:
        # Longest first, so a decimal ID is not cut by a shorter one inside it.
        for old in sorted(self.subs, key=len, reverse=True):
            text = text.replace(old, self.subs[old])
        text = re.sub(r'"raft_term":\d+', '"raft_term":<term>', text)
        text = re.sub(r'"RaftTerm" : \d+', '"RaftTerm" : <term>', text)
        text = re.sub(r"took = [0-9.]+[µmn]?s", "took = <t>", text)
        # Table columns are as wide as their widest cell, and IDs differ in length.
        return "\n".join(
            re.sub(r" +", " ", re.sub(r"-+", "-", line)) if line[:1] in ("+", "|") else line
            for line in text.split("\n")
        )


class Pair:
    """etcd and raftkv side by side: every command runs on both and must print the same."""

    def __init__(self, etcd: Target, raftkv: Target) -> None:
        self.etcd, self.raftkv = etcd, raftkv
        self.targets = (etcd, raftkv)

    def same(self, *args: str, stdin: str | None = None, fuzz: tuple[tuple[str, Any], ...] = ()) -> str:
        """Run on both, normalize, compare; `fuzz` replaces (regex, text) pairs that
        legitimately depend on timing."""
        outs = []
        for t in self.targets:
            out = t.normalize(t.run(*args, stdin=stdin).text)
            for pattern, repl in fuzz:
                out = re.sub(pattern, repl, out)
            outs.append(out)
        assert outs[1] == outs[0], f"etcdctl {' '.join(args)}: raftkv (right) differs from etcd (left)"
        return outs[0]

    def grant(self, label: str, ttl: int) -> str:
        """`lease grant`, remembering each side's lease ID under `label`."""
        outs = []
        for t in self.targets:
            r = t.run("lease", "grant", str(ttl))
            m = re.fullmatch(r"lease ([0-9a-f]+) granted with TTL\((\d+)s\)\n", r.stdout)
            assert m, r.text
            t.learn_lease(label, m.group(1))
            outs.append(t.normalize(r.text))
        assert outs[1] == outs[0]
        return outs[0]

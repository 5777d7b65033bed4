"""``raftkv cluster``: a local N-member cluster as separate ``serve`` processes.

Why processes and not tasks: each member must be killable on its own
(SIGKILL, SIGSTOP) exactly as a machine fails, and restartable on its data
dir, so the launcher runs every member as the same ``python -m real_net
serve`` a user would run on a real machine and records that command line in
``cluster.json`` (``argv``) for fault-injection tools. The launcher does not
restart a member that dies: that member belongs to whoever killed it. On
Ctrl-C or SIGTERM it stops its own members and also any process running a
member's exact ``argv`` (one such a tool restarted), found through /proc.

Layout of the data dir::

    DIR/certs/      CA, one certificate per member, the client certificate
    DIR/n1/         member n1's data dir (member/wal, member/snap, identity)
    DIR/n1.log      member n1's log (appended across runs)
    DIR/cluster.json, DIR/etcdctl.env

A second run on the same DIR reuses cluster.json's URLs (member IDs are derived
from peer URLs, so they must not change) and the certificates.

With ``restore`` (``cluster --restore FILE``), every member's data dir is first
made from a snapshot file by ``real_net.restore`` (loaded and checked once),
with this cluster's members and token, so the members all start from it.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from real_net import certs
from real_net.client import ClientTLS, status

CLUSTER_FILE = "cluster.json"
ENV_FILE = "etcdctl.env"
LOCAL_TOKEN = "raftkv-local"  # --initial-cluster-token of the members `cluster` starts
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel just handed out (free now; the member binds it a moment later)."""
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(slots=True)
class MemberSpec:
    name: str
    client_url: str
    peer_url: str
    data_dir: Path
    log: Path
    argv: list[str]
    pid: int = 0


def even_size_warning(nodes: int) -> str | None:
    if nodes % 2:
        return None
    return (
        f"warning: {nodes} members tolerate {(nodes - 1) // 2} failure(s), no more than {nodes - 1} members do, "
        f"while every write must reach {nodes // 2 + 1} of them instead of {(nodes - 1) // 2 + 1}: "
        "odd sizes (1, 3, 5, 7) are used for that reason"
    )


def serve_argv(
    spec_name: str,
    data_dir: Path,
    client_url: str,
    peer_url: str,
    initial_cluster: str,
    paths: certs.CertPaths,
    *,
    state: str = "new",
    token: str = LOCAL_TOKEN,
    client_cert_auth: bool = False,
    extra: Sequence[str] = (),
) -> list[str]:
    """The exact command line of one member (what cluster.json records as ``argv``)."""
    pair = paths.member(spec_name)
    argv = [
        sys.executable, "-m", "real_net", "serve",
        "--name", spec_name,
        "--data-dir", str(data_dir),
        "--listen-client-urls", client_url,
        "--listen-peer-urls", peer_url,
        "--initial-cluster", initial_cluster,
        "--initial-cluster-state", state,
        "--initial-cluster-token", token,
        "--cert-file", str(pair.cert), "--key-file", str(pair.key), "--trusted-ca-file", str(paths.ca),
    ]  # fmt: skip
    if client_cert_auth:
        argv.append("--client-cert-auth")
    argv.extend(extra)
    return argv


def plan(
    directory: Path,
    nodes: int,
    *,
    plain: bool = False,
    host: str = "127.0.0.1",
    client_cert_auth: bool = False,
    extra: Sequence[str] = (),
) -> tuple[list[MemberSpec], certs.CertPaths]:
    """Certificates (first run only) and each member's URLs and command line."""
    names = [f"n{i}" for i in range(1, nodes + 1)]
    paths = certs.ensure_certs(directory / "certs", names)
    previous: dict[str, dict[str, str]] = {}
    cfile = directory / CLUSTER_FILE
    if cfile.exists():
        old = json.loads(cfile.read_text())
        previous = {m["name"]: m for m in old.get("members", [])}
        if sorted(previous) != sorted(names):
            raise SystemExit(
                f"raftkv: error: {directory} holds a cluster of {sorted(previous)}, not {names}; "
                "use another --data-dir or the same --nodes"
            )
    scheme = "http" if plain else "https"
    urls: dict[str, tuple[str, str]] = {}
    for name in names:
        if name in previous:
            client = previous[name]["client_url"]
            if client.split("://")[0] != scheme:
                client = f"{scheme}://{client.split('://', 1)[1]}"
            urls[name] = (client, previous[name]["peer_url"])
        else:
            urls[name] = (f"{scheme}://{host}:{free_port(host)}", f"https://{host}:{free_port(host)}")
    initial = ",".join(f"{n}={urls[n][1]}" for n in names)
    specs = []
    for name in names:
        client, peer = urls[name]
        argv = serve_argv(
            name, directory / name, client, peer, initial, paths, client_cert_auth=client_cert_auth, extra=extra
        )
        specs.append(MemberSpec(name, client, peer, directory / name, directory / f"{name}.log", argv))
    return specs, paths


def client_tls(paths: certs.CertPaths) -> ClientTLS:
    return ClientTLS(paths.ca, paths.client.cert, paths.client.key)


def spawn(spec: MemberSpec) -> subprocess.Popen[bytes]:
    """Start one member in its own session, its output appended to its log file."""
    with open(spec.log, "ab") as logf:
        proc = subprocess.Popen(spec.argv, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
    spec.pid = proc.pid
    return proc


def wait_ready(
    specs: Sequence[MemberSpec],
    tls: ClientTLS | None,
    procs: Sequence[subprocess.Popen[bytes]] = (),
    timeout: float = READY_TIMEOUT,
) -> int:
    """Wait until every member answers Status and names the same leader; that leader's ID."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        for spec, proc in zip(specs, procs):
            if proc.poll() is not None:
                tail = spec.log.read_text(errors="replace")[-3000:] if spec.log.exists() else ""
                raise RuntimeError(f"member {spec.name} exited with status {proc.returncode}:\n{tail}")
        leaders = set()
        try:
            for spec in specs:
                leaders.add(status(spec.client_url, tls, timeout=1.0).leader)
        except grpc.RpcError as e:
            last = f"{spec.name}: {e.code().name} {e.details()}"
        else:
            if len(leaders) == 1 and 0 not in leaders:
                return leaders.pop()
            last = f"leaders seen: {sorted(leaders)}"
        time.sleep(0.1)
    raise RuntimeError(f"cluster not ready after {timeout:.0f} s ({last})")


def write_files(directory: Path, specs: Sequence[MemberSpec], paths: certs.CertPaths, plain: bool) -> None:
    body = {
        "members": [
            {"name": s.name, "client_url": s.client_url, "peer_url": s.peer_url, "pid": s.pid, "argv": s.argv,
             "data_dir": str(s.data_dir), "log": str(s.log)}
            for s in specs
        ],
        "ca": str(paths.ca),
        "cert": str(paths.client.cert),
        "key": str(paths.client.key),
    }  # fmt: skip
    tmp = directory / (CLUSTER_FILE + ".tmp")
    tmp.write_text(json.dumps(body, indent=2) + "\n")
    os.replace(tmp, directory / CLUSTER_FILE)
    lines = ["export ETCDCTL_API=3", f"export ETCDCTL_ENDPOINTS={','.join(s.client_url for s in specs)}"]
    if not plain:
        lines += [
            f"export ETCDCTL_CACERT={shlex.quote(str(paths.ca))}",
            f"export ETCDCTL_CERT={shlex.quote(str(paths.client.cert))}",
            f"export ETCDCTL_KEY={shlex.quote(str(paths.client.key))}",
        ]
    (directory / ENV_FILE).write_text("\n".join(lines) + "\n")


def etcdctl_command(specs: Sequence[MemberSpec], paths: certs.CertPaths, plain: bool) -> str:
    parts = ["etcdctl", f"--endpoints={','.join(s.client_url for s in specs)}"]
    if not plain:
        parts += [f"--cacert={paths.ca}", f"--cert={paths.client.cert}", f"--key={paths.client.key}"]
    return " ".join(shlex.quote(p) for p in parts)


def restarted_elsewhere(argv: Sequence[str]) -> list[int]:
    """PIDs of processes running exactly `argv` (a member a fault tool restarted from
    cluster.json): the launcher stops those too. Linux only (reads /proc); elsewhere none."""
    want = "\0".join(argv).encode()
    pids = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if (entry / "cmdline").read_bytes().rstrip(b"\0") == want:
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def _wait_pid(pid: int, deadline: float) -> bool:
    """Wait until `pid` (not our child) is gone; False if it outlives the deadline."""
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state == "Z":  # exited; its parent (the fault tool) has yet to reap it
            return True
        time.sleep(0.05)
    return False


def stop_all(
    procs: Sequence[subprocess.Popen[bytes]], specs: Sequence[MemberSpec] = (), timeout: float = STOP_TIMEOUT
) -> None:
    """SIGTERM every member still running (each stops cleanly), SIGKILL any that hang. A
    member that died and was restarted by someone else from its argv is stopped as well."""
    others = [pid for spec, p in zip(specs, procs) if p.poll() is not None for pid in restarted_elsewhere(spec.argv)]
    for pid in [p.pid for p in procs if p.poll() is None] + others:
        try:
            os.kill(pid, signal.SIGCONT)  # a SIGSTOPped member could not act on SIGTERM
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    for pid in others:
        if not _wait_pid(pid, deadline):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _say(line: str) -> None:
    print(line, flush=True)  # flushed: scripts read this through a pipe while the cluster runs


def run_cluster(
    directory: Path,
    nodes: int,
    *,
    plain: bool = False,
    client_cert_auth: bool = False,
    extra: Sequence[str] = (),
    out: Callable[[str], None] | None = None,
    restore: Path | None = None,
    skip_hash_check: bool = False,
) -> int:
    """The ``cluster`` command: start, report, wait for Ctrl-C/SIGTERM, stop. With
    `restore`, every member starts from that snapshot file."""
    if out is None:
        out = _say
    warning = even_size_warning(nodes)
    if warning:
        print(f"raftkv: {warning}", file=sys.stderr)
    state = None
    if restore is not None:
        from real_net import restore as restoring

        # Checked before anything is written: a bad file leaves DIR as it was.
        state = restoring.load(restore, skip_hash_check)
    directory.mkdir(parents=True, exist_ok=True)
    specs, paths = plan(directory, nodes, plain=plain, client_cert_auth=client_cert_auth, extra=extra)
    if state is not None:
        busy = [str(s.data_dir) for s in specs if s.data_dir.exists()]
        if busy:
            raise SystemExit(f"raftkv: error: --restore needs member data dirs that do not exist yet: {', '.join(busy)}")
        initial = ",".join(f"{s.name}={s.peer_url}" for s in specs)
        for spec in specs:
            done = restoring.restore_member(state, spec.data_dir, spec.name, initial, LOCAL_TOKEN, spec.peer_url)
            out(restoring.report(done))
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for spec in specs:
            procs.append(spawn(spec))
        tls = None if plain else client_tls(paths)
        leader = wait_ready(specs, tls, procs)
        write_files(directory, specs, paths, plain)
        out(f"raftkv cluster of {nodes} member(s) is up (leader {leader:x}); data in {directory}")
        for spec in specs:
            out(f"  {spec.name}  client {spec.client_url}  peer {spec.peer_url}  pid {spec.pid}  log {spec.log}")
        out("try:")
        out(f"  {etcdctl_command(specs, paths, plain)} member list -w table")
        out(f"or:  . {directory / ENV_FILE} && etcdctl put foo bar && etcdctl get foo")
        out("Ctrl-C (or SIGTERM) stops every member.")
        reported: set[int] = set()
        while not stopping:
            for spec, p in zip(specs, procs):
                if p.poll() is not None and p.pid not in reported:
                    reported.add(p.pid)
                    print(
                        f"raftkv: member {spec.name} (pid {p.pid}) exited with status {p.returncode}; "
                        "not restarting it (cluster.json has its argv)",
                        file=sys.stderr,
                    )
            time.sleep(0.2)
        return 0
    except RuntimeError as e:
        print(f"raftkv: error: {e}", file=sys.stderr)
        return 1
    finally:
        stop_all(procs, specs)
        for sig, handler in old.items():
            signal.signal(sig, handler)

"""The Python etcd client libraries people use, each in its own virtualenv, against real clusters.

Each library gets a virtualenv under ``.venv-clients/<lib>`` in the repository
root (override with RAFTKV_CLIENT_VENVS), created on first use with
``python -m venv`` and pip from the package registry, with the pins the
library needs on Python 3.11, and reused afterwards (a stamp file records what
was installed; a changed spec rebuilds it). A library's scenario script
(``scripts/<lib>_scenario.py``) runs inside that virtualenv, so the libraries'
conflicting protobuf versions never meet raftkv's. No venv (no network, a
registry error) is a test failure with pip's own words, never a skip.

The clusters are processes on free 127.0.0.1 ports, every one of them killed
when the ``with`` block exits, also when the test fails.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from real_net import certs
from real_net.launcher import free_port, plan

from ..api.support import require_binary
from ..cluster.support import TOKEN, Cluster, Node

REPO = Path(__file__).resolve().parents[3]
SCRIPTS = Path(__file__).resolve().parent / "scripts"
VENV_ROOT = Path(os.environ.get("RAFTKV_CLIENT_VENVS", REPO / ".venv-clients"))


@dataclass(frozen=True)
class Library:
    name: str  # the registry name, and the venv's directory name
    requirements: tuple[str, ...]  # what pip installs, pins included
    script: str  # under scripts/
    tls: bool  # False: the library cannot speak TLS (aetcd), so it gets a plain cluster


LIBRARIES = {
    lib.name: lib
    for lib in (
        # etcd3 0.12 was generated with protobuf 3 and uses tenacity's old `wait` signature.
        Library("etcd3", ("etcd3==0.12.0", "protobuf<4", "tenacity<7"), "etcd3_scenario.py", tls=True),
        # The fork declares grpcio only; its generated code imports protobuf.
        Library("etcd-sdk-python", ("etcd-sdk-python==0.0.7", "protobuf"), "etcd_sdk_python_scenario.py", tls=True),
        Library("aetcd", ("aetcd==1.0.0",), "aetcd_scenario.py", tls=False),
    )
}


def _run(argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def ensure_venv(lib: Library, timeout: float = 600.0) -> Path:
    """The python of the library's virtualenv, created and filled on first use."""
    venv = VENV_ROOT / lib.name
    python = venv / "bin" / "python"
    stamp = venv / ".raftkv-installed"
    spec = json.dumps({"python": sys.version.split()[0], "requirements": lib.requirements})
    VENV_ROOT.mkdir(parents=True, exist_ok=True)
    with open(VENV_ROOT / f".{lib.name}.lock", "w") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)  # pytest-xdist workers may ask at the same time
        if python.exists() and stamp.exists() and stamp.read_text() == spec:
            return python
        base = getattr(sys, "_base_executable", sys.executable)
        steps = [
            [base, "-m", "venv", "--clear", str(venv)],
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *lib.requirements],
        ]
        for argv in steps:
            try:
                r = _run(argv, timeout)
            except subprocess.TimeoutExpired:
                pytest.fail(f"creating the {lib.name} client venv timed out after {timeout:.0f} s: {' '.join(argv)}")
            if r.returncode != 0:
                pytest.fail(
                    f"could not create the virtualenv for the {lib.name} client library in {venv} "
                    f"(it is installed from the package registry: is the network up?)\n"
                    f"$ {' '.join(argv)}\nexit {r.returncode}\n{(r.stdout + r.stderr)[-3000:]}"
                )
        stamp.write_text(spec)
        return python


def run_scenario(lib: Library, cluster: Cluster, order: Sequence[str], timeout: float = 90.0) -> dict[str, Any]:
    """Run the library's scenario against the members in `order` (writer first) and parse its JSON."""
    python = ensure_venv(lib)
    argv = [str(python), str(SCRIPTS / lib.script), ",".join(cluster.nodes[n].client_url for n in order)]
    if lib.tls:
        p = cluster.paths
        argv += ["--cacert", str(p.ca), "--cert", str(p.client.cert), "--key", str(p.client.key)]
    try:
        r = _run(argv, timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{lib.name} scenario against {cluster.kind} did not finish in {timeout:.0f} s\n{e.stderr!r}")
    if r.returncode != 0:
        pytest.fail(f"{lib.name} scenario against {cluster.kind} exited {r.returncode}:\n{r.stderr[-5000:]}")
    try:
        result: dict[str, Any] = json.loads(r.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"{lib.name} scenario printed no JSON:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
    result["stderr"] = r.stderr
    return result


def writer_first(cluster: Cluster) -> list[str]:
    """[follower, other follower, leader]: writes go through a follower, reads and watches through another."""
    lead = cluster.leader()
    return [*sorted(n for n in cluster.nodes if n != lead), lead]


# ------------------------------------------------------------------ clusters


def _start(cluster: Cluster, ready: Any) -> None:
    for node in cluster.nodes.values():
        node.start()
    try:
        ready()
    except (RuntimeError, AssertionError) as e:
        logs = "\n".join(f"--- {n.name}\n{n.tail()}" for n in cluster.nodes.values())
        raise AssertionError(f"{cluster.kind} cluster did not start: {e}\n{logs}") from None


@contextmanager
def plain_raftkv_cluster(root: Path, nodes: int = 3) -> Iterator[Cluster]:
    """A raftkv cluster with plain-HTTP client URLs (peers still TLS), laid out by
    ``raftkv cluster --plain`` (real_net.launcher.plan). Every process is killed on exit."""
    root.mkdir(parents=True, exist_ok=True)
    specs, paths = plan(root, nodes, plain=True)
    cluster = Cluster("raftkv", root, paths)
    for s in specs:
        cluster.nodes[s.name] = Node(s.name, s.client_url, s.peer_url, s.data_dir, s.log, s.argv)
    try:
        _start(cluster, cluster.wait_ready)
        yield cluster
    finally:
        cluster.close()


@contextmanager
def etcd_cluster(root: Path, *, plain: bool, names: Sequence[str] = ("n1", "n2", "n3")) -> Iterator[Cluster]:
    """Real etcd 3.4 members (Debian's etcd-server), TLS on both ports or plain on both.
    Every process is killed on exit."""
    binary = require_binary("etcd")
    root.mkdir(parents=True, exist_ok=True)
    paths = certs.ensure_certs(root / "certs", list(names))
    cluster = Cluster("etcd", root, paths)
    scheme = "http" if plain else "https"
    urls = {n: (f"{scheme}://127.0.0.1:{free_port()}", f"{scheme}://127.0.0.1:{free_port()}") for n in names}
    initial = ",".join(f"{n}={urls[n][1]}" for n in names)
    for n in names:
        client, peer = urls[n]
        argv = [
            binary, "--name", n, "--data-dir", str(root / n),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", initial, "--initial-cluster-token", TOKEN, "--initial-cluster-state", "new",
        ]  # fmt: skip
        if not plain:
            pair = paths.member(n)
            argv += [
                "--cert-file", str(pair.cert), "--key-file", str(pair.key), "--trusted-ca-file", str(paths.ca),
                "--peer-cert-file", str(pair.cert), "--peer-key-file", str(pair.key),
                "--peer-trusted-ca-file", str(paths.ca), "--peer-client-cert-auth",
            ]  # fmt: skip
        cluster.nodes[n] = Node(n, client, peer, root / n, root / f"{n}.log", argv)

    def ready() -> None:
        deadline = time.monotonic() + 30
        while True:
            dead = [n.name for n in cluster.nodes.values() if not n.running]
            if dead:
                raise RuntimeError(f"etcd member(s) {dead} exited")
            try:
                cluster.leader(timeout=1.0)
                return
            except AssertionError as e:
                if time.monotonic() > deadline:
                    raise RuntimeError(str(e)) from None

    try:
        _start(cluster, ready)
        yield cluster
    finally:
        cluster.close()

"""A real etcd 3.4's snapshot restored into a 3-member raftkv cluster (``cluster --restore``).

A user's etcd gets versions of a key, a delete, a two-key txn, a key on a
lease and a compaction, then ``etcdctl snapshot save``; etcd is stopped. The
file is given to ``python -m real_net cluster --nodes 3 --restore FILE``, and
etcdctl against raftkv then sees what it saw against etcd:

* every key with its value, create and mod revisions, version and lease, on
  every member (each answers from its own state);
* an old revision through ``get --rev``; a read before the compaction refused
  with etcd's error;
* the lease, with its key attached;
* the next write gets the next revision after etcd's last one;
* ``member list``: the three new members only, with the IDs their peer URLs
  and the cluster's token give.

And the round trip: ``etcdctl snapshot save`` of that raftkv cluster, checked
by both ``snapshot status`` commands, restored with ``raftkv snapshot
restore`` into a one-member raftkv that serves the same data.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from real_net.launcher import LOCAL_TOKEN, free_port
from real_net.server import member_id_from

from ..api.support import RealEtcd, Result, etcdctl, stop_session
from .support import read_until

pytestmark = pytest.mark.timeout(180)

NEXT_KEY = "zz-next"  # the one key a test writes after the restore; the others leave it out
COMPACT = "5"


@dataclass
class Source:
    """What etcd answered before its snapshot was taken, and the snapshot."""

    file: Path
    revision: int
    kvs: list[dict[str, Any]]
    at_compaction: list[dict[str, Any]]  # get a --rev=COMPACT
    compacted: str  # etcdctl's stderr for get a --rev=COMPACT-1
    lease: str  # hex ID


def ok(r: Result) -> str:
    assert r.returncode == 0, r.text
    return r.stdout


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Source:
    path = tmp_path_factory.mktemp("etcd-source") / "etcd.db"
    with RealEtcd(name="etcd-old") as etcd:
        e = etcd.endpoint
        for args in (("put", "a", "1"), ("put", "a", "2"), ("put", "b", "x"), ("put", "a", "3"), ("del", "b")):
            ok(etcdctl(e, *args))  # revisions 2..6
        lease = ok(etcdctl(e, "lease", "grant", "3600")).split()[1]
        ok(etcdctl(e, "put", "leased", "v", f"--lease={lease}"))  # 7
        ok(etcdctl(e, "txn", stdin="\nput t1 one\nput t2 two\n\n\n"))  # 8: two keys, one revision
        ok(etcdctl(e, "compaction", COMPACT))
        ok(etcdctl(e, "put", "c", "y"))  # 9
        got = json.loads(ok(etcdctl(e, "get", "", "--prefix", "-w", "json")))
        old = json.loads(ok(etcdctl(e, "get", "a", f"--rev={COMPACT}", "-w", "json")))
        refused = etcdctl(e, "get", "a", f"--rev={int(COMPACT) - 1}")
        assert refused.returncode != 0
        ok(etcdctl(e, "snapshot", "save", str(path)))
    return Source(path, got["header"]["revision"], got["kvs"], old["kvs"], refused.stderr, lease)


@dataclass
class Restored:
    data: Path
    members: list[dict[str, Any]]
    tls: tuple[str, ...]

    def endpoints(self, *names: str) -> str:
        return ",".join(m["client_url"] for m in self.members if not names or m["name"] in names)

    def etcdctl(self, *args: str, on: tuple[str, ...] = ()) -> Result:
        return etcdctl(self.endpoints(*on), *args, tls=self.tls)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def restored(source: Source, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Restored]:
    data = tmp_path_factory.mktemp("restored") / "data"
    launcher = subprocess.Popen(
        [sys.executable, "-m", "real_net", "cluster", "--nodes", "3", "--data-dir", str(data),
         "--restore", str(source.file)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    pids: list[int] = []
    try:
        out = read_until(launcher, "Ctrl-C", 90)
        assert out.count("restored revision 9 (compacted at 5;") == 3, out
        meta = json.loads((data / "cluster.json").read_text())
        pids = [m["pid"] for m in meta["members"]]
        yield Restored(data, meta["members"], ("--cacert", meta["ca"], "--cert", meta["cert"], "--key", meta["key"]))
        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(30) == 0
    finally:
        for pid in pids:
            _kill(pid)
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
        launcher.wait(10)
        for pipe in (launcher.stdout, launcher.stderr):
            if pipe is not None:
                pipe.close()


def kvs_of(r: Result) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = json.loads(ok(r)).get("kvs", [])
    return [kv for kv in got if kv["key"] != "enotLW5leHQ="]  # base64 of NEXT_KEY


def test_every_member_serves_etcds_keys_with_their_revisions_versions_and_leases(
    source: Source, restored: Restored
) -> None:
    for m in restored.members:
        r = restored.etcdctl("get", "", "--prefix", "--consistency=s", "-w", "json", on=(m["name"],))
        assert kvs_of(r) == source.kvs, m["name"]
    r = restored.etcdctl("get", "", "--prefix", "-w", "json")
    assert kvs_of(r) == source.kvs
    assert any(kv.get("lease") for kv in source.kvs)


def test_an_old_revision_reads_and_one_before_the_compaction_is_refused_as_etcd_refuses_it(
    source: Source, restored: Restored
) -> None:
    assert kvs_of(restored.etcdctl("get", "a", f"--rev={COMPACT}", "-w", "json")) == source.at_compaction
    refused = restored.etcdctl("get", "a", f"--rev={int(COMPACT) - 1}")
    assert refused.returncode != 0
    assert refused.stderr == source.compacted == "Error: etcdserver: mvcc: required revision has been compacted\n"


def test_the_lease_is_listed_with_its_key_attached(source: Source, restored: Restored) -> None:
    assert ok(restored.etcdctl("lease", "list")) == f"found 1 leases\n{source.lease}\n"
    ttl = ok(restored.etcdctl("lease", "timetolive", source.lease, "--keys"))
    assert ttl.startswith(f"lease {source.lease} granted with TTL(3600s), remaining(")
    assert ttl.endswith("attached keys([leased])\n")


def test_the_next_write_gets_the_revision_after_etcds_last(source: Source, restored: Restored) -> None:
    r = json.loads(ok(restored.etcdctl("put", NEXT_KEY, "1", "-w", "json")))
    assert r["header"]["revision"] == source.revision + 1


def test_member_list_shows_the_new_members_only(restored: Restored) -> None:
    deadline = time.monotonic() + 15
    while True:  # each member publishes its client URL through the log once it has a leader
        listed = json.loads(ok(restored.etcdctl("member", "list", "-w", "json")))["members"]
        if all(m.get("clientURLs") for m in listed) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    want = {m["name"]: (member_id_from([m["peer_url"]], LOCAL_TOKEN), m["peer_url"], m["client_url"])
            for m in restored.members}  # fmt: skip
    got = {m["name"]: (int(m["ID"]), m["peerURLs"][0], m.get("clientURLs", [""])[0]) for m in listed}
    assert got == want and sorted(got) == ["n1", "n2", "n3"]


def test_a_raftkv_snapshot_of_the_restored_cluster_restores_into_raftkv_again(
    restored: Restored, tmp_path: Path
) -> None:
    path = tmp_path / "raftkv.db"
    ok(restored.etcdctl("snapshot", "save", str(path), on=("n2",)))
    kvs = kvs_of(restored.etcdctl("get", "", "--prefix", "--consistency=s", "-w", "json", on=("n2",)))
    ours = subprocess.run([sys.executable, "-m", "real_net", "snapshot", "status", str(path), "-w", "json"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert ours.stdout == ok(etcdctl("127.0.0.1:1", "snapshot", "status", str(path), "-w", "json"))
    client, peer = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    r = subprocess.run(
        [sys.executable, "-m", "real_net", "snapshot", "restore", str(path), "--data-dir", str(tmp_path / "solo"),
         "--name", "solo", "--initial-cluster", f"solo={peer}", "--initial-advertise-peer-urls", peer,
         "--initial-cluster-token", "round-trip"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "solo.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "real_net", "serve", "--name", "solo", "--data-dir", str(tmp_path / "solo"),
             "--listen-client-urls", client, "--listen-peer-urls", peer, "--initial-cluster", f"solo={peer}",
             "--initial-cluster-token", "round-trip"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while etcdctl(client, "endpoint", "health").returncode != 0:
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "solo.log").read_text()
            time.sleep(0.1)
        assert kvs_of(etcdctl(client, "get", "", "--prefix", "-w", "json")) == kvs
        refused = etcdctl(client, "get", "a", f"--rev={int(COMPACT) - 1}")
        assert refused.stderr == "Error: etcdserver: mvcc: required revision has been compacted\n"
        old = ("get", "a", f"--rev={COMPACT}", "-w", "json")
        assert kvs_of(etcdctl(client, *old)) == kvs_of(restored.etcdctl(*old)) != []
        assert ok(etcdctl(client, "lease", "list")).startswith("found 1 leases\n")
        members = json.loads(ok(etcdctl(client, "member", "list", "-w", "json")))["members"]
        assert [(m["name"], int(m["ID"])) for m in members] == [("solo", member_id_from([peer], "round-trip"))]
    finally:
        stop_session(proc)

"""A raftkv member's life as a process: restart, kill -9, joining, removal, bad input, a corrupt disk.

One module-scoped 3-member TLS cluster of ``raftkv serve`` processes (with a
certificate ready for a fourth member). Each test leaves the cluster with its
three founding members running and a leader, so the next can use it.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from kv import codec
from real_net.client import Stubs, channel
from real_net.proto import rpc_pb2 as pb
from real_net.transport import encode_hello
from real_net.wal import WAL
from real_net.wal_format import RecordType

from .support import Cluster, add_raftkv_node, member_ids, raftkv_cluster

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with raftkv_cluster(tmp_path_factory.mktemp("life"), spare=("n4",)) as c:
        yield c


def put(c: Cluster, name: str, key: str, value: str) -> None:
    with channel(c.nodes[name].client_url, c.tls) as ch:
        Stubs(ch).kv.Put(pb.PutRequest(key=key.encode(), value=value.encode()), timeout=5)


def local_view(c: Cluster, name: str, prefix: str) -> dict[str, str]:
    """What member `name` itself holds under `prefix` (a serializable read: no ReadIndex)."""
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    with channel(c.nodes[name].client_url, c.tls) as ch:
        resp = Stubs(ch).kv.Range(
            pb.RangeRequest(key=prefix.encode(), range_end=end.encode(), serializable=True), timeout=5
        )
    return {kv.key.decode(): kv.value.decode() for kv in resp.kvs}


def wait_for(what: str, predicate: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = predicate()  # type: ignore[operator]
            if last:
                return
        except grpc.RpcError as e:
            last = e
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def test_a_member_restarted_on_its_data_dir_keeps_its_data_and_catches_up(cluster: Cluster) -> None:
    follower = cluster.followers()[0]
    for i in range(5):
        put(cluster, cluster.leader(), f"keep/{i}", f"v{i}")
    node = cluster.nodes[follower]
    assert node.terminate() == 0  # SIGTERM: a clean stop
    assert "stopping" in node.tail(500)
    for i in range(5, 8):  # written while it is down
        put(cluster, cluster.leader(), f"keep/{i}", f"v{i}")
    node.start()
    cluster.wait_ready()
    want = {f"keep/{i}": f"v{i}" for i in range(8)}
    wait_for("the restarted member to catch up", lambda: local_view(cluster, follower, "keep/") == want)
    # kill -9 and restart: what it had acknowledged is still there.
    node.kill()
    node.start()
    cluster.wait_ready()
    wait_for("the killed member to recover", lambda: local_view(cluster, follower, "keep/") == want)
    assert "restarted from its data dir" in node.tail(2000)


def test_killing_the_leader_during_writes_loses_no_acknowledged_write(cluster: Cluster) -> None:
    acked: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()
    names = list(cluster.nodes)

    def writer(w: int) -> None:
        rng = random.Random(w)
        i = 0
        target = names[w % len(names)]
        while not stop.is_set():
            key = f"ack/{w}/{i}"
            try:
                with channel(cluster.nodes[target].client_url, cluster.tls) as ch:
                    kv = Stubs(ch).kv
                    while not stop.is_set():
                        kv.Put(pb.PutRequest(key=key.encode(), value=b"x"), timeout=3)
                        with lock:
                            acked.add(key)
                        i += 1
                        key = f"ack/{w}/{i}"
            except grpc.RpcError:
                i += 1  # that write's fate is unknown; never reuse its key
                target = rng.choice(names)
                time.sleep(0.05)

    threads = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        leader = cluster.leader()
        before_kill = len(acked)
        cluster.nodes[leader].kill()
        time.sleep(2.5)
        cluster.nodes[leader].start()
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    cluster.wait_ready()
    assert before_kill > 0 and len(acked) > before_kill, "writes must continue under the new leader"
    for name in cluster.nodes:
        wait_for(
            f"{name} to hold every acknowledged write",
            lambda: acked <= set(local_view(cluster, name, "ack/")),  # noqa: B023 - used at once
        )


def test_member_add_joins_an_empty_member_and_member_remove_stops_it(cluster: Cluster) -> None:
    peer = f"https://127.0.0.1:{_free_port()}"
    added = cluster.etcdctl("member", "add", "n4", f"--peer-urls={peer}")
    assert added.returncode == 0, added.text
    m = re.search(r'ETCD_INITIAL_CLUSTER="([^"]+)"', added.stdout)
    assert m and 'ETCD_INITIAL_CLUSTER_STATE="existing"' in added.stdout, added.stdout
    id_match = re.search(r"Member +([0-9a-f]+) added to cluster", added.stdout)
    assert id_match, added.text
    new_id = int(id_match.group(1), 16)
    put(cluster, cluster.leader(), "before-join", "1")
    node = add_raftkv_node(cluster, "n4", m.group(1))
    assert node.peer_url == peer
    node.start()
    try:
        cluster.wait_ready(["n4"], timeout=30)
        wait_for("n4 to replicate the data", lambda: local_view(cluster, "n4", "before-join") == {"before-join": "1"})
        # It publishes its name and client URL through the log once it has caught up.
        started = rf"{new_id:x}, started, n4, {peer}, {node.client_url}, false"
        try:
            wait_for("n4 to publish itself", lambda: re.search(started, cluster.etcdctl("member", "list").stdout))
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- n4's log:\n{node.tail()}") from None
        put(cluster, "n4", "through-n4", "2")  # the new member forwards writes too
        removed = cluster.etcdctl("member", "remove", f"{new_id:x}", on=["n1"])
        assert removed.returncode == 0 and f"Member {new_id:16x} removed from cluster" in removed.stdout, removed.text
        assert node.proc is not None
        assert node.proc.wait(20) == 0, node.tail()
        assert "permanently removed from the cluster" in node.tail()
    finally:
        node.kill()
        del cluster.nodes["n4"]
    assert set(member_ids(cluster)) == {"n1", "n2", "n3"}
    assert local_view(cluster, cluster.leader(), "through-n4") == {"through-n4": "2"}


def test_garbage_on_the_client_and_peer_ports_leaves_the_member_serving(cluster: Cluster) -> None:
    name = cluster.followers()[0]
    node = cluster.nodes[name]
    rng = random.Random(7)
    for url in (node.client_url, node.peer_url):
        host, port = url.split("://")[1].split(":")
        for size in (1, 100, 70_000):
            with socket.create_connection((host, int(port)), timeout=5) as s:
                s.sendall(rng.randbytes(size))
                s.settimeout(0.3)
                try:
                    s.recv(100)  # the member answers or hangs up; it must not stop serving
                except OSError:
                    pass
    # Past TLS with a valid member certificate: a good hello, then frames of garbage.
    pair = cluster.paths.member("n1")
    ctx = ssl.create_default_context(cafile=str(cluster.paths.ca))
    ctx.load_cert_chain(str(pair.cert), str(pair.key))
    host, port = node.peer_url.split("://")[1].split(":")
    status = cluster.status(name)
    bad_crc = codec.frame(b"\xff" * 40)
    bad_crc = bad_crc[:4] + bytes([bad_crc[4] ^ 1]) + bad_crc[5:]
    for junk, closes in ((bad_crc, True), (codec.frame(b"\xff" * 40), True), (b"\x00\x00\x10\x00" + b"\x01" * 64, False)):
        with socket.create_connection((host, int(port)), timeout=5) as raw, ctx.wrap_socket(raw, server_hostname=host) as s:
            s.sendall(encode_hello(status.header.cluster_id, 12345, status.header.member_id) + junk)
            if closes:  # a frame that fails its CRC or does not decode: the member hangs up
                s.settimeout(5)
                try:
                    assert s.recv(100) == b""
                except (ConnectionResetError, ssl.SSLError):
                    pass
            # (a frame announcing more bytes than were sent just waits for them, until we hang up)
    assert node.running
    put(cluster, name, "after-garbage", "ok")
    assert cluster.etcdctl("get", "after-garbage", on=[name]).stdout == "after-garbage\nok\n"
    assert cluster.etcdctl("endpoint", "health").returncode == 0


def test_a_corrupt_wal_record_in_the_middle_fails_start_naming_the_file_and_offset(
    cluster: Cluster, tmp_path: Path
) -> None:
    name = cluster.followers()[0]
    node = cluster.nodes[name]
    assert node.terminate() == 0
    copy = tmp_path / "corrupt"
    shutil.copytree(node.data_dir, copy)
    node.start()
    wal = WAL(copy / "member" / "wal", lambda: [], 64 * 1024 * 1024, True)
    try:
        entries = [r for r in wal.open() if r.type is RecordType.ENTRY]
    finally:
        wal.close()
    victim = entries[len(entries) // 2]
    with open(victim.segment, "r+b") as f:
        f.seek(victim.offset + codec.HEADER_SIZE + 3)
        byte = f.read(1)
        f.seek(victim.offset + codec.HEADER_SIZE + 3)
        f.write(bytes([byte[0] ^ 0xFF]))
    argv = list(node.argv)
    argv[argv.index("--data-dir") + 1] = str(copy)
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    segment_copy = copy / "member" / "wal" / victim.segment.name
    assert f"{segment_copy}: offset {victim.offset}" in r.stderr, r.stderr
    assert "valid records follow it" in r.stderr
    cluster.wait_ready()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_sigterm_stops_a_member_cleanly_and_releases_its_data_dir(cluster: Cluster) -> None:
    name = cluster.followers()[0]
    node = cluster.nodes[name]
    assert node.terminate() == 0
    # The directory lock is released: a second process could open it now.
    wal = WAL(node.data_dir / "member" / "wal", lambda: [], 64 * 1024 * 1024, True)
    wal.open()
    wal.close()
    node.start()
    cluster.wait_ready()
    assert os.path.exists(node.data_dir / "member" / "identity.json")


def test_the_client_port_also_serves_etcds_json_gateway_through_a_follower(cluster: Cluster) -> None:
    import base64
    import json
    import urllib.request

    follower = cluster.followers()[0]
    ctx = ssl.create_default_context(cafile=str(cluster.paths.ca))
    ctx.load_cert_chain(str(cluster.paths.client.cert), str(cluster.paths.client.key))
    body = json.dumps({"key": base64.b64encode(b"via-json").decode(), "value": base64.b64encode(b"1").decode()})
    req = urllib.request.Request(f"{cluster.nodes[follower].client_url}/v3/kv/put", data=body.encode(), method="POST")
    with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
        assert resp.status == 200 and "header" in json.loads(resp.read())
    assert cluster.etcdctl("get", "via-json", on=[cluster.leader()]).stdout == "via-json\n1\n"

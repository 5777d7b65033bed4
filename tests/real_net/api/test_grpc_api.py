"""The etcd v3 gRPC API over LocalBackend, driven by the generated Python stubs.

Each test starts its own server on an ephemeral 127.0.0.1 port (and stops it),
then checks what etcd clients rely on: filled counts and headers, etcd's status
codes and exact error texts, the Watch and LeaseKeepAlive stream behaviour.
"""

from __future__ import annotations

import hashlib
import queue
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from kv import api
from real_net import bbolt
from real_net.grpc_server import ServerTLS
from real_net.proto import rpc_pb2 as pb
from real_net.proto import rpc_pb2_grpc as pb_grpc
from real_net.snapshot_file import HASH_IGNORES, backend_hash

from .support import ServerThread

Code = grpc.StatusCode


class Client:
    """One channel with every etcd service stub."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.channel = channel
        self.kv = pb_grpc.KVStub(channel)
        self.watch = pb_grpc.WatchStub(channel)
        self.lease = pb_grpc.LeaseStub(channel)
        self.cluster = pb_grpc.ClusterStub(channel)
        self.maintenance = pb_grpc.MaintenanceStub(channel)
        self.auth = pb_grpc.AuthStub(channel)

    def put(self, key: bytes, value: bytes, **kw: Any) -> pb.PutResponse:
        resp: pb.PutResponse = self.kv.Put(pb.PutRequest(key=key, value=value, **kw), timeout=5)
        return resp

    def get(self, key: bytes, **kw: Any) -> pb.RangeResponse:
        resp: pb.RangeResponse = self.kv.Range(pb.RangeRequest(key=key, **kw), timeout=5)
        return resp


@pytest.fixture
def server() -> Iterator[ServerThread]:
    with ServerThread(min_lease_ttl=1, progress_interval=0.3) as s:
        yield s


@pytest.fixture
def client(server: ServerThread) -> Iterator[Client]:
    channel = grpc.insecure_channel(server.endpoint)
    try:
        yield Client(channel)
    finally:
        channel.close()


def rpc_error(fn: Any, request: Any, **kwargs: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as e:
        fn(request, timeout=5, **kwargs)
    return e.value.code(), e.value.details()


class WatchSession:
    """A Watch stream fed from a queue, so a test can interleave requests and reads."""

    def __init__(self, client: Client) -> None:
        self._requests: queue.Queue[pb.WatchRequest | None] = queue.Queue()
        self.responses = client.watch.Watch(self._gen(), timeout=20)

    def _gen(self) -> Iterator[pb.WatchRequest]:
        while (r := self._requests.get()) is not None:
            yield r

    def send(self, **arm: Any) -> None:
        self._requests.put(pb.WatchRequest(**arm))

    def create(self, key: bytes, **kw: Any) -> None:
        self.send(create_request=pb.WatchCreateRequest(key=key, **kw))

    def recv(self) -> pb.WatchResponse:
        resp: pb.WatchResponse = next(self.responses)
        return resp

    def half_close(self) -> None:
        self._requests.put(None)

    def close(self) -> None:
        self.responses.cancel()
        self._requests.put(None)


@pytest.fixture
def watch(client: Client) -> Iterator[WatchSession]:
    session = WatchSession(client)
    try:
        yield session
    finally:
        session.close()


# ------------------------------------------------------------------------- KV


def test_range_fills_count_more_and_the_header(client: Client) -> None:
    for i in range(3):
        client.put(b"r/%d" % i, b"v%d" % i)
    resp = client.get(b"r/", range_end=b"r0", limit=2)
    assert [kv.key for kv in resp.kvs] == [b"r/0", b"r/1"]
    assert resp.more and resp.count == 3  # clients treat count 0 as "nothing"
    assert resp.header.revision == 4 and resp.header.member_id and resp.header.cluster_id
    assert resp.header.raft_term == 1


def test_range_options_sort_keys_only_count_only_and_revision(client: Client) -> None:
    client.put(b"s/a", b"3")
    client.put(b"s/b", b"1")
    client.put(b"s/a", b"2")
    by_value = client.get(b"s/", range_end=b"s0", sort_target=pb.RangeRequest.VALUE,
                          sort_order=pb.RangeRequest.DESCEND)  # fmt: skip
    assert [kv.value for kv in by_value.kvs] == [b"2", b"1"]
    keys = client.get(b"s/", range_end=b"s0", keys_only=True)
    assert [(kv.key, kv.value) for kv in keys.kvs] == [(b"s/a", b""), (b"s/b", b"")]
    counted = client.get(b"s/", range_end=b"s0", count_only=True)
    assert counted.count == 2 and not counted.kvs
    old = client.get(b"s/a", revision=2)
    assert old.kvs[0].value == b"3" and old.header.revision == 4


def test_put_returns_prev_kv_when_asked(client: Client) -> None:
    client.put(b"p", b"one")
    resp = client.put(b"p", b"two", prev_kv=True)
    assert resp.prev_kv.value == b"one" and resp.prev_kv.version == 1
    assert not client.put(b"p2", b"x", prev_kv=True).HasField("prev_kv")


def test_delete_range_counts_and_returns_prev_kvs(client: Client) -> None:
    client.put(b"d/1", b"a")
    client.put(b"d/2", b"b")
    resp = client.kv.DeleteRange(pb.DeleteRangeRequest(key=b"d/", range_end=b"d0", prev_kv=True), timeout=5)
    assert resp.deleted == 2 and [kv.value for kv in resp.prev_kvs] == [b"a", b"b"]
    assert client.get(b"d/", range_end=b"d0").count == 0


def test_txn_compare_and_swap_with_nested_txn_headers(client: Client) -> None:
    client.put(b"t", b"old")
    swap = pb.TxnRequest(
        compare=[pb.Compare(key=b"t", target=pb.Compare.VALUE, result=pb.Compare.EQUAL, value=b"old")],
        success=[
            pb.RequestOp(request_put=pb.PutRequest(key=b"t", value=b"new")),
            pb.RequestOp(request_txn=pb.TxnRequest(
                compare=[pb.Compare(key=b"t", target=pb.Compare.VERSION, result=pb.Compare.GREATER, version=0)],
                success=[pb.RequestOp(request_range=pb.RangeRequest(key=b"t"))],
            )),
        ],
        failure=[pb.RequestOp(request_range=pb.RangeRequest(key=b"t"))],
    )  # fmt: skip
    resp = client.kv.Txn(swap, timeout=5)
    assert resp.succeeded and resp.header.revision == 3
    nested = resp.responses[1].response_txn
    assert nested.succeeded and nested.header.revision == 3  # nested headers carry the revision
    assert nested.responses[0].response_range.kvs[0].value == b"new"
    again = client.kv.Txn(swap, timeout=5)
    assert not again.succeeded and again.responses[0].response_range.kvs[0].value == b"new"


def test_compaction_makes_old_revisions_out_of_range(client: Client) -> None:
    client.put(b"c", b"1")
    client.put(b"c", b"2")
    client.kv.Compact(pb.CompactionRequest(revision=3), timeout=5)
    assert rpc_error(client.kv.Range, pb.RangeRequest(key=b"c", revision=2)) == (
        Code.OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted")
    assert rpc_error(client.kv.Compact, pb.CompactionRequest(revision=3)) == (
        Code.OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted")
    assert rpc_error(client.kv.Range, pb.RangeRequest(key=b"c", revision=99)) == (
        Code.OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision")  # fmt: skip


def _txn_ops(n: int) -> pb.TxnRequest:
    return pb.TxnRequest(success=[pb.RequestOp(request_put=pb.PutRequest(key=b"k%d" % i)) for i in range(n)])


@pytest.mark.parametrize(
    ("method", "request_", "code", "text"),
    [
        ("kv.Range", pb.RangeRequest(), Code.INVALID_ARGUMENT, "etcdserver: key is not provided"),
        ("kv.Put", pb.PutRequest(value=b"v"), Code.INVALID_ARGUMENT, "etcdserver: key is not provided"),
        ("kv.Put", pb.PutRequest(key=b"k", value=b"v", ignore_value=True), Code.INVALID_ARGUMENT,
         "etcdserver: value is provided"),
        ("kv.Put", pb.PutRequest(key=b"k", lease=5, ignore_lease=True), Code.INVALID_ARGUMENT,
         "etcdserver: lease is provided"),
        ("kv.Put", pb.PutRequest(key=b"absent", ignore_value=True), Code.INVALID_ARGUMENT,
         "etcdserver: key not found"),
        ("kv.Put", pb.PutRequest(key=b"k", lease=12345), Code.NOT_FOUND, "etcdserver: requested lease not found"),
        ("kv.Range", pb.RangeRequest(key=b"k", sort_order=7), Code.INVALID_ARGUMENT,
         "etcdserver: invalid sort option"),
        ("kv.DeleteRange", pb.DeleteRangeRequest(), Code.INVALID_ARGUMENT, "etcdserver: key is not provided"),
        ("kv.Txn", _txn_ops(129), Code.INVALID_ARGUMENT, "etcdserver: too many operations in txn request"),
        ("kv.Txn", pb.TxnRequest(success=[pb.RequestOp(request_put=pb.PutRequest(key=b"x"))] * 2),
         Code.INVALID_ARGUMENT, "etcdserver: duplicate key given in txn request"),
        ("kv.Txn", pb.TxnRequest(success=[pb.RequestOp()]), Code.INVALID_ARGUMENT, "etcdserver: key not found"),
        ("kv.Put", pb.PutRequest(key=b"big", value=b"x" * (1536 * 1024)), Code.INVALID_ARGUMENT,
         "etcdserver: request is too large"),
        ("lease.LeaseRevoke", pb.LeaseRevokeRequest(ID=999), Code.NOT_FOUND,
         "etcdserver: requested lease not found"),
        ("lease.LeaseGrant", pb.LeaseGrantRequest(TTL=9_000_000_001), Code.OUT_OF_RANGE,
         "etcdserver: too large lease TTL"),
        ("cluster.MemberRemove", pb.MemberRemoveRequest(ID=42), Code.NOT_FOUND, "etcdserver: member not found"),
        ("cluster.MemberAdd", pb.MemberAddRequest(peerURLs=["not a url"]), Code.INVALID_ARGUMENT,
         "etcdserver: given member URLs are invalid"),
        ("cluster.MemberAdd", pb.MemberAddRequest(peerURLs=["http://10.0.0.1"]), Code.INVALID_ARGUMENT,
         "etcdserver: given member URLs are invalid"),
        ("auth.Authenticate", pb.AuthenticateRequest(name="root", password="x"), Code.FAILED_PRECONDITION,
         "etcdserver: authentication is not enabled"),
    ],
    ids=lambda v: v if isinstance(v, str) and " " not in v else None,
)  # fmt: skip
def test_errors_carry_etcds_status_codes_and_texts(
    client: Client, method: str, request_: Any, code: grpc.StatusCode, text: str
) -> None:
    service, name = method.split(".")
    assert rpc_error(getattr(getattr(client, service), name), request_) == (code, text)


def test_a_message_beyond_the_grpc_limit_is_refused_by_grpc(client: Client) -> None:
    code, details = rpc_error(client.kv.Put, pb.PutRequest(key=b"huge", value=b"x" * (2100 * 1024)))
    assert code == Code.RESOURCE_EXHAUSTED and "larger than max" in details
    client.put(b"after", b"ok")  # the server keeps serving


# ---------------------------------------------------------------------- lease


def test_lease_grant_keep_alive_time_to_live_leases_and_revoke(client: Client, watch: WatchSession) -> None:
    grant = client.lease.LeaseGrant(pb.LeaseGrantRequest(TTL=30), timeout=5)
    assert grant.ID > 0 and grant.TTL == 30 and grant.header.revision == 1
    client.put(b"l/a", b"1", lease=grant.ID)
    client.put(b"l/b", b"2", lease=grant.ID)
    ttl = client.lease.LeaseTimeToLive(pb.LeaseTimeToLiveRequest(ID=grant.ID, keys=True), timeout=5)
    assert ttl.grantedTTL == 30 and 28 <= ttl.TTL <= 30 and list(ttl.keys) == [b"l/a", b"l/b"]
    leases = client.lease.LeaseLeases(pb.LeaseLeasesRequest(), timeout=5)
    assert [s.ID for s in leases.leases] == [grant.ID]

    # One request, then half-close: one answer, then the server ends the stream (etcd).
    answers = list(client.lease.LeaseKeepAlive(iter([pb.LeaseKeepAliveRequest(ID=grant.ID)]), timeout=5))
    assert [(a.ID, a.TTL) for a in answers] == [(grant.ID, 30)]

    watch.create(b"l/", range_end=b"l0")
    assert watch.recv().created
    client.lease.LeaseRevoke(pb.LeaseRevokeRequest(ID=grant.ID), timeout=5)
    deleted = watch.recv()
    # Every key of the lease goes in one revision, so in one watch response.
    assert [(e.type, e.kv.key, e.kv.mod_revision) for e in deleted.events] == [(1, b"l/a", 4), (1, b"l/b", 4)]
    gone = client.lease.LeaseTimeToLive(pb.LeaseTimeToLiveRequest(ID=grant.ID), timeout=5)
    assert gone.TTL == -1  # etcd answers -1 for a lease that is gone, not an error


def test_keep_alive_for_an_unknown_lease_answers_ttl_zero(client: Client) -> None:
    answers = list(client.lease.LeaseKeepAlive(iter([pb.LeaseKeepAliveRequest(ID=77)] * 2), timeout=5))
    assert [(a.ID, a.TTL) for a in answers] == [(77, 0), (77, 0)]
    assert all(a.header.member_id for a in answers)


def test_lease_grant_with_an_existing_id_is_lease_already_exists(client: Client) -> None:
    client.lease.LeaseGrant(pb.LeaseGrantRequest(TTL=5, ID=4242), timeout=5)
    assert rpc_error(client.lease.LeaseGrant, pb.LeaseGrantRequest(TTL=5, ID=4242)) == (
        Code.FAILED_PRECONDITION, "etcdserver: lease already exists")  # fmt: skip


def test_an_expired_lease_deletes_its_keys(client: Client, watch: WatchSession) -> None:
    grant = client.lease.LeaseGrant(pb.LeaseGrantRequest(TTL=1), timeout=5)
    client.put(b"e", b"v", lease=grant.ID)
    watch.create(b"e")
    assert watch.recv().created
    started = time.monotonic()
    resp = watch.recv()
    assert [(e.type, e.kv.key) for e in resp.events] == [(1, b"e")]
    assert 0.5 <= time.monotonic() - started < 3.0
    assert client.get(b"e").count == 0


# ---------------------------------------------------------------------- watch


def test_one_stream_carries_many_watches_each_created_before_its_events(
    client: Client, watch: WatchSession
) -> None:
    watch.create(b"w/a")
    watch.create(b"w/", range_end=b"w0", prev_kv=True)
    first, second = watch.recv(), watch.recv()
    assert (first.created, first.watch_id, second.created, second.watch_id) == (True, 0, True, 1)
    client.put(b"w/a", b"1")
    client.put(b"w/a", b"2")
    got: dict[int, list[Any]] = {0: [], 1: []}
    while len(got[0]) + len(got[1]) < 4:
        r = watch.recv()
        got[r.watch_id].extend((e.kv.value, e.prev_kv.value if e.HasField("prev_kv") else None) for e in r.events)
    assert got[0] == [(b"1", None), (b"2", None)]
    assert got[1] == [(b"1", None), (b"2", b"1")]


def test_watch_cancel_progress_and_client_chosen_ids(client: Client, watch: WatchSession) -> None:
    watch.create(b"x", watch_id=7)
    assert (r := watch.recv()).created and r.watch_id == 7
    watch.create(b"y", watch_id=7)
    dup = watch.recv()
    assert (dup.created, dup.canceled, dup.watch_id) == (True, True, -1)
    assert dup.cancel_reason == "mvcc: duplicate watch ID provided on the WatchStream"
    watch.send(cancel_request=pb.WatchCancelRequest(watch_id=99))  # unknown: etcd says nothing
    watch.send(cancel_request=pb.WatchCancelRequest(watch_id=7))
    assert (r := watch.recv()).canceled and r.watch_id == 7
    client.put(b"x", b"ignored")
    watch.send(progress_request=pb.WatchProgressRequest())
    progress = watch.recv()
    assert progress.watch_id == -1 and not progress.events and progress.header.revision == 2


def test_watch_from_a_past_revision_replays_history_with_filters(client: Client, watch: WatchSession) -> None:
    client.put(b"h", b"1")
    client.kv.DeleteRange(pb.DeleteRangeRequest(key=b"h"), timeout=5)
    client.put(b"h", b"2")
    watch.create(b"h", start_revision=1)
    assert watch.recv().created
    assert [(e.type, e.kv.mod_revision) for e in watch.recv().events] == [(0, 2), (1, 3), (0, 4)]
    watch.create(b"h", start_revision=1, filters=[pb.WatchCreateRequest.NOPUT])
    assert watch.recv().created
    assert [(e.type, e.kv.mod_revision) for e in watch.recv().events] == [(1, 3)]


def test_watch_from_a_compacted_revision_is_canceled_with_the_compact_revision(
    client: Client, watch: WatchSession
) -> None:
    for v in (b"1", b"2", b"3"):
        client.put(b"k", v)
    client.kv.Compact(pb.CompactionRequest(revision=3), timeout=5)
    watch.create(b"k", start_revision=2)
    assert watch.recv().created
    r = watch.recv()
    assert (r.canceled, r.compact_revision, r.watch_id) == (True, 3, 0)


def test_progress_notify_watchers_get_empty_responses_when_idle(watch: WatchSession) -> None:
    watch.create(b"quiet", progress_notify=True)
    assert watch.recv().created
    r = watch.recv()  # the test server's progress interval is 0.3 s
    assert r.watch_id == 0 and not r.events and not r.canceled


def test_a_half_closed_watch_stream_keeps_delivering_events(client: Client, watch: WatchSession) -> None:
    watch.create(b"hc")
    assert watch.recv().created
    watch.half_close()
    client.put(b"hc", b"still")
    assert [e.kv.value for e in watch.recv().events] == [b"still"]


def test_an_empty_watch_request_is_skipped(watch: WatchSession) -> None:
    watch.send()
    watch.create(b"after-empty")
    assert watch.recv().created


# -------------------------------------------------------- cluster, maintenance


def test_member_list_and_single_member_limits(server: ServerThread, client: Client) -> None:
    members = client.cluster.MemberList(pb.MemberListRequest(), timeout=5).members
    assert len(members) == 1
    me = members[0]
    assert me.name == "default" and list(me.clientURLs) == [f"http://{server.endpoint}"]
    assert rpc_error(client.cluster.MemberPromote, pb.MemberPromoteRequest(ID=me.ID)) == (
        Code.FAILED_PRECONDITION, "etcdserver: can only promote a learner member")
    code, text = rpc_error(client.cluster.MemberAdd, pb.MemberAddRequest(peerURLs=["http://127.0.0.1:1"]))
    assert code == Code.FAILED_PRECONDITION and "without raft" in text
    assert rpc_error(client.cluster.MemberAdd, pb.MemberAddRequest(peerURLs=list(me.peerURLs))) == (
        Code.FAILED_PRECONDITION, "etcdserver: Peer URLs already exists")
    updated = client.cluster.MemberUpdate(pb.MemberUpdateRequest(ID=me.ID, peerURLs=["http://127.0.0.1:9"]),
                                          timeout=5)  # fmt: skip
    assert list(updated.members[0].peerURLs) == ["http://127.0.0.1:9"]


def test_status_and_hash_kv(client: Client) -> None:
    client.put(b"a", b"1")
    status = client.maintenance.Status(pb.StatusRequest(), timeout=5)
    assert status.leader == status.header.member_id and status.version == api.ETCD_VERSION
    assert status.raftIndex == status.raftAppliedIndex == 1 and status.dbSize > 0 and not status.isLearner
    h1 = client.maintenance.HashKV(pb.HashKVRequest(revision=2), timeout=5)
    client.put(b"b", b"2")
    h2 = client.maintenance.HashKV(pb.HashKVRequest(revision=2), timeout=5)
    h3 = client.maintenance.HashKV(pb.HashKVRequest(), timeout=5)
    assert h1.hash == h2.hash != h3.hash
    assert (h2.hash_revision, h3.hash_revision, h3.header.revision) == (2, 3, 3)


def test_alarm_list_is_empty_and_alarm_changes_are_unimplemented(client: Client) -> None:
    resp = client.maintenance.Alarm(pb.AlarmRequest(action=pb.AlarmRequest.GET), timeout=5)
    assert not resp.alarms and resp.header.member_id
    code, text = rpc_error(client.maintenance.Alarm, pb.AlarmRequest(action=pb.AlarmRequest.ACTIVATE))
    assert code == Code.UNIMPLEMENTED and "Alarm" in text


def test_defragment_answers_and_move_leader_checks_its_target(client: Client) -> None:
    assert client.maintenance.Defragment(pb.DefragmentRequest(), timeout=5).header.member_id
    me = client.maintenance.Status(pb.StatusRequest(), timeout=5).header.member_id
    assert client.maintenance.MoveLeader(pb.MoveLeaderRequest(targetID=me), timeout=5).header.member_id == me
    code, text = rpc_error(client.maintenance.MoveLeader, pb.MoveLeaderRequest(targetID=me + 1))
    assert code == Code.FAILED_PRECONDITION and text == "etcdserver: bad leader transferee"


def test_downgrade_is_unimplemented_as_in_etcd_3_4(client: Client) -> None:
    code, text = rpc_error(client.maintenance.Downgrade, pb.DowngradeRequest())
    assert code == Code.UNIMPLEMENTED and text.startswith("raftkv: Maintenance.Downgrade")


def test_hash_is_the_crc32c_of_the_snapshots_backend_without_the_consistent_index(client: Client) -> None:
    *chunks, _ = client.maintenance.Snapshot(pb.SnapshotRequest(), timeout=5)
    db = bbolt.read_db(b"".join(m.blob for m in chunks))
    resp = client.maintenance.Hash(pb.HashRequest(), timeout=5)
    assert resp.hash == backend_hash(db.buckets, HASH_IGNORES) != backend_hash(db.buckets)
    assert resp.header.member_id and resp.header.revision
    client.kv.Put(pb.PutRequest(key=b"hash-me", value=b"1"), timeout=5)
    assert client.maintenance.Hash(pb.HashRequest(), timeout=5).hash != resp.hash


def test_snapshot_streams_a_bbolt_database_then_its_sha256(client: Client) -> None:
    # More in test_snapshot.py (etcdctl snapshot save/status/restore against etcd 3.4).
    *chunks, trailer = client.maintenance.Snapshot(pb.SnapshotRequest(), timeout=5)
    db = b"".join(m.blob for m in chunks)
    assert trailer.blob == hashlib.sha256(db).digest() and trailer.remaining_bytes == 0
    assert b"key" in bbolt.read_db(db).buckets


def test_auth_status_says_disabled_until_auth_enable_and_counts_auth_revisions(client: Client) -> None:
    status = client.auth.AuthStatus(pb.AuthStatusRequest(), timeout=5)
    assert not status.enabled and status.header.member_id and status.authRevision == 1
    code, text = rpc_error(client.auth.Authenticate, pb.AuthenticateRequest(name="u", password="p"))
    assert (code, text) == (Code.FAILED_PRECONDITION, "etcdserver: authentication is not enabled")
    code, text = rpc_error(client.auth.AuthEnable, pb.AuthEnableRequest())
    assert (code, text) == (Code.FAILED_PRECONDITION, "etcdserver: root user does not exist")
    client.auth.UserAdd(pb.AuthUserAddRequest(name="root", password="pw"), timeout=5)
    client.auth.UserGrantRole(pb.AuthUserGrantRoleRequest(user="root", role="root"), timeout=5)
    client.auth.AuthEnable(pb.AuthEnableRequest(), timeout=5)
    status = client.auth.AuthStatus(pb.AuthStatusRequest(), timeout=5)
    assert status.enabled and status.authRevision == 3
    code, text = rpc_error(client.kv.Range, pb.RangeRequest(key=b"k"))
    assert (code, text) == (Code.INVALID_ARGUMENT, "etcdserver: user name is empty")
    token = client.auth.Authenticate(pb.AuthenticateRequest(name="root", password="pw"), timeout=5).token
    assert client.kv.Range(pb.RangeRequest(key=b"k"), metadata=(("token", token),), timeout=5).count == 0
    code, text = rpc_error(client.kv.Range, pb.RangeRequest(key=b"k"), metadata=(("token", "bogus.1"),))
    assert (code, text) == (Code.UNAUTHENTICATED, "etcdserver: invalid auth token")
    code, text = rpc_error(client.auth.Authenticate, pb.AuthenticateRequest(name="root", password="bad"))
    assert (code, text) == (Code.INVALID_ARGUMENT, "etcdserver: authentication failed, invalid user ID or password")
    client.auth.AuthDisable(pb.AuthDisableRequest(), metadata=(("token", token),), timeout=5)


# ------------------------------------------------------------------------ TLS


def test_tls_with_client_cert_auth_refuses_clients_without_a_certificate(tmp_path: Any) -> None:
    from real_net.certs import ensure_certs

    certs = ensure_certs(tmp_path, ["n1"])
    tls = ServerTLS(certs.member("n1").cert, certs.member("n1").key, certs.ca, client_cert_auth=True)
    with ServerThread(tls=tls) as s:
        assert s.server.url.startswith("https://")
        ca = certs.ca.read_bytes()
        good = grpc.ssl_channel_credentials(ca, certs.client.key.read_bytes(), certs.client.cert.read_bytes())
        with grpc.secure_channel(s.endpoint, good) as ch:
            Client(ch).put(b"secure", b"yes")
            assert Client(ch).get(b"secure").kvs[0].value == b"yes"
        with grpc.secure_channel(s.endpoint, grpc.ssl_channel_credentials(ca)) as ch:
            with pytest.raises(grpc.RpcError) as e:
                Client(ch).get(b"secure")
            assert e.value.code() == Code.UNAVAILABLE


def test_client_cert_auth_needs_a_trusted_ca() -> None:
    with pytest.raises(ValueError, match="trusted_ca_file"):
        ServerTLS("cert.pem", "key.pem", client_cert_auth=True)

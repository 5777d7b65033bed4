"""Member: one etcd cluster member = RaftNode + the replicated state machine + reads, leases, watches.

Sans-IO like the RaftNode it wraps (DESIGN.md, "The core contract"): the driver
feeds ``tick(now)``, ``step(message)`` and ``submit(token, request, now)``, and
drains ``ready()`` / ``advance()``. A ``MemberReady`` carries the Raft work
(persist, send) plus what the member has for clients: responses addressed by
the driver's tokens, and watch responses addressed by watch-stream tokens.

How requests travel (after etcd v3.4/3.5's server, etcdserver/v3_server.go):

* writes (Put, DeleteRange, a Txn with writes, Compaction, lease grant, revoke
  and keep-alive, membership changes) are proposed through Raft and answered
  when the entry applies, with the revision and term of that moment;
* linearizable reads (range, read-only txn, lease time-to-live and list, a
  linearizable member list) use ReadIndex, batched: reads that arrive while a
  round is in flight share the next round (etcd's linearizableReadLoop);
* serializable reads, member list, status and HashKV answer at once from
  local state;
* expired leases are revoked by the leader *through the log*, so every member
  deletes the same keys at the same revision, and only if no keep-alive was
  applied since the leader decided. Keep-alives go through the log too (etcd
  forwards them to the leader instead; a sans-IO member has no side channel),
  which keeps every member's lease deadlines close to the leader's;
* MoveLeader hands leadership over (leader only), Defragment takes a snapshot.

* with auth on (kv/auth.py, kv/authorize.py), a request runs as the user its
  client's token names: writes carry that user into the log and are checked
  when they apply, reads and watches are checked before they are served, and
  Authenticate checks the password after a ReadIndex round and hands out its
  token through the log (kv/authenticate.py).

The ReadIndex read path is kv/read_index.py, Authenticate kv/authenticate.py and
lease expiry kv/lease_expiry.py; their functions are bound here as Member's methods.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from kv import api, authenticate, lease_expiry, read_index
from kv.applier import MEMBER_REQUESTS, StateMachine, is_read, new_member_id
from kv.auth import NO_USER, AuthInfo
from kv.authorize import denied_watch, hash_passwords
from kv.bugs import TeachingBug, parse_bugs
from kv.codec import decode_api, decode_conf_change, encode_api
from kv.errors import (
    ConfigError,
    CorruptRecord,
    ErrBadLeaderTransferee,
    ErrLeaderChanged,
    ErrNoLeader,
    ErrNotLeader,
    ErrRequestTooLarge,
    ErrTimeoutLeaderTransfer,
    ErrTooManyRequests,
    ProposalDropped,
    RaftKVError,
)
from kv.lease import min_lease_ttl
from kv.request_checks import check_request
from kv.raft.config import RaftConfig
from kv.raft.messages import (
    NONE,
    ConfChange,
    ConfChangeSingle,
    ConfChangeType,
    Entry,
    EntryType,
    Message,
    Role,
    Snapshot,
)
from kv.raft.node import RaftNode
from kv.raft.ready import Ready
from kv.raft.storage import MemoryStorage
from kv.read_index import ReadRound
from kv.watch import WatchHub

Token = Hashable
# What ReadIndex serves.
ReadRequest = (
    api.RangeRequest
    | api.TxnRequest
    | api.MemberListRequest
    | api.LeaseTimeToLiveRequest
    | api.LeaseLeasesRequest
    | api.AuthenticateRequest
)
Outcome = Any  # a kv.api response dataclass, or the RaftKVError the request failed with

# etcd's defaults (embed/config.go): 1.5 MiB requests, a snapshot every 100,000
# applied entries keeping 5,000 behind it for slow followers.
DEFAULT_MAX_REQUEST_BYTES = 1_572_864
DEFAULT_SNAPSHOT_COUNT = 100_000
DEFAULT_SNAPSHOT_CATCHUP_ENTRIES = 5_000
# etcd refuses new proposals while applying lags commit by this much (ErrTooManyRequests).
MAX_GAP_BETWEEN_APPLY_AND_COMMIT = 5_000

_READ_QUERIES = (api.MemberListRequest, api.HashKVRequest)  # answered at once from local state
_WATCH_REQUESTS = (api.WatchCreateRequest, api.WatchCancelRequest, api.WatchProgressRequest)


@dataclass(frozen=True, slots=True)
class MemberConfig:
    raft: RaftConfig  # raft.id is this member's ID
    name: str = ""
    cluster_id: int = 0
    snapshot_count: int = DEFAULT_SNAPSHOT_COUNT
    snapshot_catchup_entries: int = DEFAULT_SNAPSHOT_CATCHUP_ENTRIES
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    # A ReadIndex round unanswered this long is asked again (etcd's readIndexRetryTime is
    # 500 ms with a 1 s election timeout). 0 = half the minimum election timeout.
    read_index_retry: float = 0.0
    # Teaching bugs of every level (kv/bugs.py); the Raft-level ones reach the RaftNode.
    bugs: frozenset[TeachingBug] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        object.__setattr__(self, "bugs", parse_bugs(self.bugs) | self.raft.bugs)
        if self.snapshot_count <= 0:
            raise ConfigError("snapshot_count must be greater than 0")
        if self.snapshot_catchup_entries < 0:
            raise ConfigError("snapshot_catchup_entries must not be negative")
        if self.max_request_bytes <= 0:
            raise ConfigError("max_request_bytes must be greater than 0")
        if not (self.read_index_retry >= 0 and math.isfinite(self.read_index_retry)):
            raise ConfigError("read_index_retry must be a finite number >= 0")
        if self.read_index_retry == 0:
            object.__setattr__(self, "read_index_retry", self.raft.election_timeout_min / 2)

    @property
    def min_lease_ttl(self) -> int:
        # etcd's --election-timeout is the *lower* bound of its randomized range [E, 2E).
        return min_lease_ttl(self.raft.election_timeout_min, self.raft.heartbeat_interval)


@dataclass(frozen=True, slots=True)
class MemberReady:
    raft: Ready | None  # persist hard_state/entries/snapshot (fsync if must_sync), then send messages
    snapshot: Snapshot | None  # a state-machine snapshot this member took: persist it durably
    responses: tuple[tuple[Token, Outcome], ...]
    watch_responses: tuple[tuple[Token, api.WatchResponse], ...]


class Member:
    def __init__(
        self,
        config: MemberConfig,
        storage: MemoryStorage,
        rng: random.Random,
        now: float,
        initial_members: Mapping[int, api.Member],
        join: bool = False,
    ) -> None:
        """Start a member over `storage`: empty for a new member, or what its disk kept.

        `initial_members` is the cluster as etcd's ``--initial-cluster`` names it. A
        founding member (``join=False``) bootstraps Raft with them as voters; a member
        added to a running cluster (``join=True``, etcd's
        ``--initial-cluster-state=existing``) starts Raft empty and learns the
        configuration from the leader, as etcd's RestartNode without peers.
        """
        self.config = config
        self.id = config.raft.id
        self.storage = storage
        self.rng = rng
        self.now = now
        snap = storage.snapshot()
        self.restarted = storage.last_index() > 0 or not snap.is_empty
        voters = () if join else tuple(i for i, m in sorted(initial_members.items()) if not m.is_learner)
        learners = () if join else tuple(i for i, m in sorted(initial_members.items()) if m.is_learner)
        raft_cfg = replace(config.raft, bugs=config.bugs)
        self.node = RaftNode(raft_cfg, storage, rng, initial_voters=voters, initial_learners=learners, now=now)
        self.sm = StateMachine(config.min_lease_ttl, initial_members)
        if not snap.is_empty:
            self.sm.restore(snap.data, now)
        self.watches = WatchHub()
        self.snapshot_index = snap.metadata.index
        # Proposal ids: (incarnation, seq), unique across restarts thanks to a fresh incarnation.
        self.incarnation = rng.getrandbits(62) + 1
        self.seq = 0
        self.pending: dict[int, Token] = {}  # seq of this incarnation's proposals -> client token
        self.read_round: ReadRound | None = None
        self.read_queue: list[tuple[Token, ReadRequest]] = []
        self.read_ready: list[ReadRound] = []  # answered rounds waiting for apply to reach their index
        self.responses: list[tuple[Token, Outcome]] = []
        self.watch_responses: list[tuple[Token, api.WatchResponse]] = []
        self.pending_snapshot: Snapshot | None = None
        # Conf changes applied to the state machine's view in ready(), settled after the
        # RaftNode applies them in advance() (it may refuse one).
        self.conf_changes: list[tuple[Entry, api.Proposal, int]] = []
        # Leases whose revoke we proposed and that have not applied -> when proposed.
        self.revoking: dict[int, float] = {}
        self.revoke_blocked_until = -math.inf
        self.transfers: list[tuple[Token, int, float]] = []  # MoveLeader requests waiting: token, target, deadline
        # Authenticate requests past their ReadIndex round, whose password advance() checks.
        self.auth_checks: list[tuple[Token, api.AuthenticateRequest]] = []
        self.authenticating: dict[int, api.AuthenticateRequest] = {}  # seq -> the request, for a retry
        self.lead = NONE

    # ------------------------------------------------------------------ inputs

    def tick(self, now: float) -> None:
        if now > self.now:
            self.now = now
        # Lease timers before Raft's: a member that wakes from a long pause acts on the
        # leader it knew (which is what lets the lease-follower-clock bug bite).
        self._expire_leases()
        self.node.tick(self.now)
        if self.transfers:
            self._settle_transfers()
        r = self.read_round
        if r is not None and self.now >= r.sent_at + self.config.read_index_retry:
            self._requeue_read_round()
        self._next_read_round()
        if not self.watches.idle:
            for stream, resp in self.watches.progress_due(self.now, self.header()):
                self.watch_responses.append((stream, resp))

    def deadline(self) -> float:
        """The driver's clock time at which this member next needs tick()."""
        d = self.node.deadline()
        if self._expires_leases():
            nxt = self._next_lease_deadline()
            if nxt is not None:
                d = min(d, nxt)
        if self.read_round is not None:
            d = min(d, self.read_round.sent_at + self.config.read_index_retry)
        for _, _, deadline in self.transfers:
            d = min(d, deadline)
        if not self.watches.idle:
            p = self.watches.next_progress_deadline()
            if p is not None:
                d = min(d, p)
        return d

    def step(self, m: Message) -> None:
        # etcd's EtcdServer.Process: a member removed from the cluster is not heard any more
        # (a removed member still running would otherwise disrupt it with its elections).
        if m.from_ in self.sm.removed:
            return
        self.node.step(m)

    @property
    def removed(self) -> bool:
        """This member was removed from the cluster; etcd shuts such a member down."""
        return self.id in self.sm.removed

    def is_removed(self, member_id: int) -> bool:
        return member_id in self.sm.removed

    def submit(self, token: Token, request: Any, now: float, auth_token: str = "") -> None:
        """A client request (a kv.api request dataclass). Its outcome comes in a later Ready:
        watch requests' in ``watch_responses`` (`token` is then the watch stream), all
        others' in ``responses``. `auth_token` is the client's token (gRPC metadata
        ``token``), as Authenticate handed it out; it matters only while auth is on."""
        if now > self.now:
            self.now = now
        refusal = self.sm.watch_refusal(request, auth_token, self.now)
        if refusal is not None:
            self.watch_responses.append((token, denied_watch(self.header(), request, refusal)))
            return
        try:
            info = NO_USER if isinstance(request, _WATCH_REQUESTS) else self.sm.auth_info(auth_token, self.now)
            self._route(token, request, info)
        except RaftKVError as e:
            self.responses.append((token, e))

    def publish(self, token: Token, client_urls: tuple[str, ...], now: float) -> None:
        """Announce this member's name and client URLs through the log (etcd publishes
        on every start, so `member list` shows them after MemberAdd or a URL change)."""
        req = api.MemberAttrSetRequest(ID=self.id, name=self.config.name, client_urls=tuple(client_urls))
        self.submit(token, req, now)

    def close_watch_stream(self, stream: Token) -> None:
        self.watches.close_stream(stream)

    # ----------------------------------------------------------------- outputs

    def ready(self) -> MemberReady | None:
        rd = self.node.ready()
        if rd is not None:
            self._on_leader(rd.soft_state.leader)
            if rd.snapshot is not None:
                self._install_snapshot(rd.snapshot)
            for e in rd.committed_entries:
                self._apply_entry(e)
            for rs in rd.read_states:
                self._read_state(rs)
        self._flush_reads()
        if rd is None and not self.responses and not self.watch_responses and self.pending_snapshot is None:
            return None
        out = MemberReady(
            raft=rd,
            snapshot=self.pending_snapshot,
            responses=tuple(self.responses),
            watch_responses=tuple(self.watch_responses),
        )
        self.responses = []
        self.watch_responses = []
        self.pending_snapshot = None
        return out

    def advance(self, rd: MemberReady) -> None:
        if rd.raft is not None:
            self.node.advance(rd.raft)
        self._settle_conf_changes()
        self._maybe_snapshot()
        if self.auth_checks:
            self._check_passwords()
        self._next_read_round()

    # ---------------------------------------------------------------- queries

    @property
    def applied_index(self) -> int:
        return self.node.log.applied

    @property
    def revision(self) -> int:
        return self.sm.revision

    @property
    def is_leader(self) -> bool:
        return self.node.role == Role.LEADER

    def hash_kv(self, revision: int = 0) -> tuple[int, int]:
        """(hash, revision hashed at): equal on members that applied the same log."""
        resp = self.sm.store.hash_kv(revision)
        return resp.hash, resp.hash_revision

    # --------------------------------------------------------------- routing

    def _route(self, token: Token, req: Any, info: AuthInfo = NO_USER) -> None:
        if isinstance(req, api.InternalAuthenticateRequest):
            raise TypeError("InternalAuthenticateRequest is the member's own; clients send AuthenticateRequest")
        # Reads and local admin requests are checked here, by the member serving them
        # (etcd checks a read against its applied auth store too); writes when they apply.
        self.sm.check_served(info, req)
        if isinstance(req, api.AuthenticateRequest):
            # etcd's Authenticate: a ReadIndex round first, so the password is checked against
            # an auth store at least as new as any write acknowledged before (advance() checks it).
            self._read(token, req, False)
        elif isinstance(req, api.AuthStatusRequest):
            self.responses.append((token, self._fill(self.sm.auth.status())))
        elif isinstance(req, (api.RangeRequest, api.TxnRequest)) and is_read(req):
            check_request(req)
            serializable = isinstance(req, api.RangeRequest) and req.serializable
            self._read(token, req, serializable)
        elif isinstance(req, (api.LeaseTimeToLiveRequest, api.LeaseLeasesRequest)) or (
            isinstance(req, api.MemberListRequest) and req.linearizable
        ):
            # Linearizable as etcd's: it forwards lease queries to the leader, and answers a
            # linearizable member list after a ReadIndex round; here both wait for one, so a
            # lease granted or revoked through another member is never missed.
            self._read(token, req, False)
        elif isinstance(req, _WATCH_REQUESTS):
            self._watch(token, req)
        elif isinstance(req, _READ_QUERIES):
            self.responses.append((token, self._fill(self.sm.query(req, self.now))))
        elif isinstance(req, api.StatusRequest):
            self.responses.append((token, self._status()))
        elif isinstance(req, api.MoveLeaderRequest):
            self._move_leader(token, req.target_id)
        elif isinstance(req, api.DefragmentRequest):
            # Nothing in memory fragments; what defragmenting is for in etcd, giving disk
            # back, is done here by a snapshot: the log before it and its WAL go.
            self._maybe_snapshot(force=True)
            self.responses.append((token, self._fill(api.DefragmentResponse())))
        elif isinstance(req, MEMBER_REQUESTS):
            self._propose_member_change(token, req)
        else:
            self.sm.check_write(req)
            self._propose(token, hash_passwords(req, self.rng), info)

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def _propose(self, token: Token | None, req: Any, info: AuthInfo = NO_USER) -> int:
        if self.node.log.committed - self.node.log.applied > MAX_GAP_BETWEEN_APPLY_AND_COMMIT:
            raise ErrTooManyRequests()
        seq = self._next_seq()
        prop = api.Proposal(
            incarnation=self.incarnation, seq=seq, request=req, username=info.username, auth_revision=info.revision
        )
        data = encode_api(prop)
        if len(data) > self.config.max_request_bytes:
            raise ErrRequestTooLarge()
        try:
            self.node.propose(data)
        except ProposalDropped:
            # Never entered the log: a definite failure the client may safely retry.
            raise (ErrNoLeader() if self.node.lead == NONE else ErrLeaderChanged()) from None
        if token is not None:
            self.pending[seq] = token
        return seq

    # Linearizable reads (kv/read_index.py), Authenticate (kv/authenticate.py) and lease
    # expiry (kv/lease_expiry.py), bound here as methods.

    _read = read_index.read
    _start_read_round = read_index.start_read_round
    _read_state = read_index.read_state
    _flush_reads = read_index.flush_reads
    _requeue_read_round = read_index.requeue_read_round
    _next_read_round = read_index.next_read_round

    _check_passwords = authenticate.check_passwords
    _retry_if_stale = authenticate.retry_if_stale

    _expires_leases = lease_expiry.expires_leases
    _expire_leases = lease_expiry.expire_leases
    _next_lease_deadline = lease_expiry.next_lease_deadline

    # --------------------------------------------------------------- watches

    def _watch(self, stream: Token, req: Any) -> None:
        if (
            isinstance(req, api.WatchCreateRequest)
            and req.start_revision > 0
            and self.restarted
            and self.node.config.has_bug(TeachingBug.WATCH_SKIP)
        ):
            # TEACHING BUG watch-skip: after a restart this member resumes a watch one
            # revision late, so the events at start_revision are never delivered.
            req = replace(req, start_revision=req.start_revision + 1)
        for resp in self.watches.handle(stream, req, self.sm.store, self.header(), self.now):
            self.watch_responses.append((stream, resp))

    # --------------------------------------------------------- local answers

    def _status(self) -> api.StatusResponse:
        st = self.node.status()
        size = self.sm.store.db_size()
        return api.StatusResponse(
            header=self.header(),
            version=api.ETCD_VERSION,
            db_size=size,
            leader=st.leader,
            raft_index=st.commit,
            raft_term=st.term,
            raft_applied_index=st.applied,
            errors=(),
            db_size_in_use=size,
            is_learner=self.node.is_learner,
        )

    # ------------------------------------------------- leadership transfer

    def _move_leader(self, token: Token, target: int) -> None:
        """etcd's MoveLeader: only the leader hands over, to a voting member; answered
        when the target leads, or ErrTimeoutLeaderTransfer after an election timeout."""
        if self.node.role != Role.LEADER:
            raise ErrNotLeader()
        if target not in self.node.conf_state().voters:
            raise ErrBadLeaderTransferee()
        if target == self.id:
            self.responses.append((token, self._fill(api.MoveLeaderResponse())))
            return
        self.node.transfer_leadership(target)
        self.transfers.append((token, target, self.now + 2 * self.config.raft.election_timeout_max))

    def _settle_transfers(self) -> None:
        keep = []
        for token, target, deadline in self.transfers:
            if self.lead == target:
                self.responses.append((token, self._fill(api.MoveLeaderResponse())))
            elif self.now >= deadline:
                self.responses.append((token, ErrTimeoutLeaderTransfer()))
            else:
                keep.append((token, target, deadline))
        self.transfers = keep

    # ------------------------------------------------------------ membership

    def _propose_member_change(self, token: Token, req: Any) -> None:
        self.sm.check_member_change(req)
        seq = self._next_seq()
        if isinstance(req, api.MemberAddRequest):
            member_id = new_member_id(req.peer_urls, f"{self.incarnation}/{seq}".encode())
            kind = ConfChangeType.ADD_LEARNER_NODE if req.is_learner else ConfChangeType.ADD_NODE
        elif isinstance(req, api.MemberRemoveRequest):
            member_id, kind = req.ID, ConfChangeType.REMOVE_NODE
        elif isinstance(req, api.MemberUpdateRequest):
            member_id, kind = req.ID, ConfChangeType.UPDATE_NODE
        else:  # MemberPromoteRequest: a learner becomes a voter
            member_id, kind = req.ID, ConfChangeType.ADD_NODE
        context = encode_api(api.Proposal(incarnation=self.incarnation, seq=seq, request=req))
        try:
            self.node.propose_conf_change(ConfChange(changes=(ConfChangeSingle(kind, member_id),), context=context))
        except ProposalDropped:
            raise (ErrNoLeader() if self.node.lead == NONE else ErrLeaderChanged()) from None
        self.pending[seq] = token

    # -------------------------------------------------------------- applying

    def _apply_entry(self, e: Entry) -> None:
        if e.type == EntryType.CONF_CHANGE:
            cc = decode_conf_change(e.data)
            if cc.context:  # bootstrap entries carry none: initial_members already has them
                prop = decode_proposal(cc.context, e.index)
                self.conf_changes.append((e, prop, cc.changes[0].node_id))
            return
        if not e.data:
            return  # a new leader's empty entry
        prop = decode_proposal(e.data, e.index)
        if self.sm.is_duplicate(prop):
            return  # a forwarded proposal the network delivered twice
        outcome, events = self.sm.apply(prop, e.index, self.now)
        if isinstance(prop.request, (api.LeaseRevokeRequest, api.LeaseExpireRequest)):
            self.revoking.pop(prop.request.ID, None)
        if events and not self.watches.idle:
            for stream, resp in self.watches.notify(events, self.sm.store, self.header()):
                self.watch_responses.append((stream, resp))
        self._answer(prop, outcome)

    def _settle_conf_changes(self) -> None:
        if not self.conf_changes:
            return
        rejected = dict(self.node.rejected_conf_changes)
        for e, prop, member_id in self.conf_changes:
            if self.sm.is_duplicate(prop):
                continue
            outcome = self.sm.apply_member_change(prop, e.index, member_id, rejected.get(e.index))
            self._answer(prop, outcome)
        self.conf_changes = []
        # A snapshot from before the change would not name a member just added, and a
        # member refuses a snapshot whose configuration leaves it out (as etcd-raft's
        # restore): a new member could never catch up. Snapshot now, with the new config.
        self._maybe_snapshot(force=True)

    def _answer(self, prop: api.Proposal, outcome: Outcome) -> None:
        if prop.incarnation != self.incarnation:
            return
        if self.authenticating and self._retry_if_stale(prop, outcome):
            return
        token = self.pending.pop(prop.seq, None)
        if token is not None:
            self.responses.append((token, self._fill(outcome)))

    def _install_snapshot(self, snap: Snapshot) -> None:
        self.sm.restore(snap.data, self.now)
        self.snapshot_index = snap.metadata.index
        # Watchers now lag the store: the hub replays what they missed from its history.
        for stream, resp in self.watches.resync(self.sm.store, self.header()):
            self.watch_responses.append((stream, resp))

    def _maybe_snapshot(self, force: bool = False) -> None:
        applied = self.node.log.applied
        if applied - self.snapshot_index < (1 if force else self.config.snapshot_count):
            return
        if applied > self.storage.last_index():
            return  # only what is in the log can be snapshotted
        snap = self.storage.create_snapshot(applied, self.node.conf_state(), self.sm.snapshot())
        self.snapshot_index = applied
        compact_to = applied - self.config.snapshot_catchup_entries
        if compact_to > self.storage.first_index():
            self.storage.compact(compact_to)
        self.pending_snapshot = snap

    # --------------------------------------------------------------- helpers

    def _on_leader(self, lead: int) -> None:
        if lead == self.lead:
            return
        was_leader = self.lead == self.id
        self.lead = lead
        if lead == self.id:
            # etcd's lessor.Promote: every lease gets a full TTL from now, so none expires
            # early because of the time the election took.
            self.sm.lessor.promote(self.now)
        elif was_leader:
            self.sm.lessor.demote()
            self.revoking.clear()
        self._requeue_read_round()
        if self.transfers:
            self._settle_transfers()

    def header(self) -> api.ResponseHeader:
        """The response header of this moment (etcd's: cluster, member, revision, term)."""
        return api.ResponseHeader(
            cluster_id=self.config.cluster_id, member_id=self.id, revision=self.sm.revision, raft_term=self.node.term
        )

    def _fill(self, outcome: Outcome) -> Outcome:
        if isinstance(outcome, RaftKVError):
            return outcome
        return api.fill_header(outcome, self.header())


@functools.lru_cache(maxsize=4096)
def _decode(data: bytes) -> Any:
    # A pure function of the bytes, and its result is immutable: in a simulation every
    # member decodes the same entry, so remembering recent ones saves the repeats.
    return decode_api(data)


def decode_proposal(data: bytes, index: int) -> api.Proposal:
    prop = _decode(data)
    if not isinstance(prop, api.Proposal):
        raise CorruptRecord(f"log entry {index} holds {type(prop).__name__}, not a Proposal")
    return prop


__all__ = ["Member", "MemberConfig", "MemberReady"]

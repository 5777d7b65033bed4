"""RaftNode: the Raft protocol as a sans-IO state machine, shaped like etcd-io/raft's RawNode.

Inputs are method calls: ``tick(now)``, ``step(message)``, ``propose(data)``,
``read_index(ctx)``, ``transfer_leadership(to)``, ``propose_conf_change(cc)``.
The one output is ``ready()``: a ``Ready`` holding everything the driver must
do — persist the hard state and entries (and snapshot), *then* send the
messages, apply the committed entries — after which it calls ``advance(rd)``.
Nothing may be fed in between ``ready()`` and ``advance()``.

Time is passed in: ``now`` is float seconds of the driver's clock; ``deadline()``
tells when the node next needs ``tick``. Drivers call ``tick(now)`` every time
they wake, before feeding anything else, so timers reset by a message use the
right time. Randomness (election timeouts) comes from a ``random.Random`` the
caller owns.

The rules implemented here cite the Raft paper (Ongaro & Ousterhout 2014,
"§5.x", "Figure 2") and Ongaro's dissertation (2014, "dissertation §x.y").
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from kv.bugs import TeachingBug
from kv import codec  # module import: kv.codec imports kv.raft.messages, so bind late
from kv.errors import ConfigError, CorruptRecord, ProposalDropped, RaftKVError
from kv.raft import confchange
from kv.raft.config import RaftConfig
from kv.raft.log import RaftLog
from kv.raft.messages import (
    NONE,
    ConfChange,
    ConfChangeSingle,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    ReadState,
    Role,
    Snapshot,
    SoftState,
)
from kv.raft.progress import Progress, ProgressState
from kv.raft.quorum import VoteResult, joint_vote_result
from kv.raft.readonly import ReadOnly
from kv.raft.storage import ErrCompactedLog, ErrUnavailable, Storage, entry_size
from kv.raft.tracker import ProgressTracker

_VOTE_TRAFFIC = frozenset(
    {MessageType.VOTE, MessageType.VOTE_RESP, MessageType.PRE_VOTE, MessageType.PRE_VOTE_RESP}
)
_FORWARDED = frozenset({MessageType.PROP, MessageType.READ_INDEX, MessageType.TRANSFER_LEADER})

# Context of a campaign forced by TIMEOUT_NOW: voters grant it even inside a leader lease.
CAMPAIGN_TRANSFER = b"transfer"


class DriverError(RaftKVError):
    """The driver broke the Ready contract (e.g. fed input before advancing a Ready)."""

    message = "raft: driver misuse"


@dataclass(frozen=True, slots=True)
class Ready:
    """Everything the driver must do, in order: persist, send, apply, then advance()."""

    soft_state: SoftState
    hard_state: HardState | None  # None when unchanged since the last Ready
    entries: tuple[Entry, ...]  # to append to stable storage (after truncating conflicts)
    snapshot: Snapshot | None  # to persist and hand to the state machine
    committed_entries: tuple[Entry, ...]  # to apply, in order
    messages: tuple[Message, ...]  # to send only after the above is durable (but see send_first)
    read_states: tuple[ReadState, ...]
    must_sync: bool  # whether persisting requires an fsync before sending
    # The messages may go out *before* the persist, overlapping the leader's disk write with
    # the followers' (Raft dissertation §10.2.1; etcd's raftNode does it): true for a leader's
    # Ready that changes neither term nor vote and installs no snapshot. Safe because the
    # leader counts its own entries toward a quorum only after advance().
    send_first: bool = False


@dataclass(frozen=True, slots=True)
class ProgressView:
    match_index: int
    next_index: int
    state: ProgressState
    is_learner: bool
    recent_active: bool


@dataclass(frozen=True, slots=True)
class Status:
    """A read-only view for tests, invariant checkers and etcd's Status RPC."""

    id: int
    term: int
    vote: int
    commit: int
    applied: int
    role: Role
    leader: int
    last_index: int
    conf_state: ConfState
    progress: dict[int, ProgressView]
    lead_transferee: int


class RaftNode:
    def __init__(
        self,
        config: RaftConfig,
        storage: Storage,
        rng: random.Random,
        initial_voters: tuple[int, ...] = (),
        initial_learners: tuple[int, ...] = (),
        now: float = 0.0,
    ) -> None:
        """Start (or restart) a node over `storage`.

        The membership comes from the storage's snapshot if it has one, else from
        `initial_voters` / `initial_learners` (as etcd's --initial-cluster, given on
        every start); conf change entries after that are re-applied as they are
        re-delivered for application.
        """
        self.id = config.id
        self.config = config
        self.rng = rng
        self.now = now
        self.log = RaftLog(storage)
        self.tracker = ProgressTracker(config.max_inflight_msgs)
        self.read_only = ReadOnly()
        self.msgs: list[Message] = []
        self.read_states: list[ReadState] = []
        # Reads that arrived before this leader committed an entry of its own term (dissertation §6.4).
        self.pending_read_index: list[Message] = []

        hs, cs = storage.initial_state()
        snap = storage.snapshot()
        if snap.is_empty and not cs.voters:
            cs = ConfState(voters=tuple(sorted(initial_voters)), learners=tuple(sorted(initial_learners)))
        self.tracker.config, self.tracker.progress = confchange.restore(
            cs, self.log.last_index(), config.max_inflight_msgs
        )
        if hs == HardState() and snap.is_empty and storage.last_index() == 0 and cs.voters:
            hs = self._bootstrap(cs)
        if hs.commit > self.log.last_index():
            raise ConfigError(f"hard state commit {hs.commit} is out of range [last index {self.log.last_index()}]")
        self.term = hs.term
        self.vote = hs.vote
        self.log.commit_to(hs.commit)

        self.role = Role.FOLLOWER
        self.lead = NONE
        self.lead_transferee = NONE
        self.transfer_deadline = 0.0
        self.pending_conf_index = 0
        self.uncommitted_size = 0
        self.election_deadline = 0.0
        self.election_reset_at = now
        self.heartbeat_deadline = 0.0
        self.check_quorum_deadline = 0.0
        self.become_follower(self.term, NONE)

        self._prev_hard_state, _ = storage.initial_state()
        self._outstanding: Ready | None = None
        # Conf change entries that could not be applied (invalid when committed); kept for inspection.
        self.rejected_conf_changes: list[tuple[int, str]] = []

    def _bootstrap(self, cs: ConfState) -> HardState:
        """First start of a new cluster: write the initial membership into the log.

        As etcd's StartNode, every founding member appends the same committed
        conf change entries (term 1, one per member), so a node added later
        learns the whole membership history by replicating the log.
        """
        changes = [ConfChangeSingle(ConfChangeType.ADD_NODE, v) for v in cs.voters]
        changes += [ConfChangeSingle(ConfChangeType.ADD_LEARNER_NODE, v) for v in cs.learners]
        entries = [
            Entry(term=1, index=i + 1, type=EntryType.CONF_CHANGE, data=codec.encode_conf_change(ConfChange(changes=(c,))))
            for i, c in enumerate(changes)
        ]
        self.log.append(entries)
        return HardState(term=1, vote=NONE, commit=len(entries))

    # ------------------------------------------------------------------ inputs

    def tick(self, now: float) -> None:
        """Advance the node's clock to `now` and fire whatever timers have expired."""
        self._check_no_outstanding("tick")
        if now > self.now:
            self.now = now
        if self.role == Role.LEADER:
            self._tick_leader()
        elif self.now >= self.election_deadline:
            self._reset_election_timer()
            if self._promotable():
                self.step(Message(type=MessageType.HUP, from_=self.id))

    def deadline(self) -> float:
        """The driver's clock time at which the node next needs tick()."""
        if self.role == Role.LEADER:
            d = min(self.heartbeat_deadline, self.check_quorum_deadline)
            if self.lead_transferee != NONE:
                d = min(d, self.transfer_deadline)
            return d
        return self.election_deadline

    def campaign(self) -> None:
        """Start an election now (etcd's Campaign), as if the election timeout fired."""
        self.step(Message(type=MessageType.HUP, from_=self.id))

    def propose(self, data: bytes) -> None:
        """Propose a normal entry. Raises ProposalDropped when it cannot be accepted now."""
        self.step(Message(type=MessageType.PROP, from_=self.id, entries=(Entry(term=0, index=0, data=data),)))

    def propose_conf_change(self, cc: ConfChange) -> None:
        """Propose a membership change (one change: §4.1; several or JOINT_*: joint consensus §4.3)."""
        data = codec.encode_conf_change(cc)
        entry = Entry(term=0, index=0, type=EntryType.CONF_CHANGE, data=data)
        self.step(Message(type=MessageType.PROP, from_=self.id, entries=(entry,)))

    def read_index(self, ctx: bytes) -> None:
        """Ask for a linearizable read point; the answer comes as a ReadState carrying ctx.

        ctx must be unique among outstanding requests (the Member makes it so).
        """
        if not ctx:
            raise ConfigError("read_index ctx must not be empty")
        self.step(Message(type=MessageType.READ_INDEX, from_=self.id, context=ctx))

    def transfer_leadership(self, to: int) -> None:
        """Ask the leader to hand leadership to `to` (dissertation §3.10)."""
        self.step(Message(type=MessageType.TRANSFER_LEADER, from_=to))

    def report_unreachable(self, node_id: int) -> None:
        self.step(Message(type=MessageType.UNREACHABLE, from_=node_id))

    def report_snapshot(self, node_id: int, failed: bool) -> None:
        self.step(Message(type=MessageType.SNAP_STATUS, from_=node_id, reject=failed))

    def step(self, m: Message) -> None:
        """Feed one message (from a peer, or a local input built by the methods above)."""
        self._check_no_outstanding("step")
        if m.term == 0:
            pass  # local message
        elif m.term > self.term:
            if m.type in (MessageType.VOTE, MessageType.PRE_VOTE):
                force = m.context == CAMPAIGN_TRANSFER
                in_lease = (
                    self.config.check_quorum
                    and self.lead != NONE
                    and self.now - self.election_reset_at < self.config.election_timeout_min
                )
                if not force and in_lease:
                    # Leader lease (dissertation §4.2.3): we heard from a live leader
                    # recently, so a disruptive candidate is ignored, term and all.
                    return
            if m.type == MessageType.PRE_VOTE:
                pass  # a pre-vote never changes our term (dissertation §9.6)
            elif m.type == MessageType.PRE_VOTE_RESP and not m.reject:
                pass  # our own future term, granted; the term moves when we campaign for real
            elif m.type in (MessageType.APP, MessageType.HEARTBEAT, MessageType.SNAP):
                self.become_follower(m.term, m.from_)
            else:
                # Raft Figure 2: a newer term alone does not reset the election timer; only
                # hearing the current leader or granting a vote does. (etcd-io/raft resets it
                # here; then a candidate that cannot win, e.g. with a short log, restarts the
                # timers of those that could, and elections take longer: Figure 16 measures
                # the paper's rule.) A deposed leader starts a fresh timeout, as LogCabin's.
                self.become_follower(m.term, NONE, reset_timer=self.role == Role.LEADER)
        elif m.term < self.term:
            if (self.config.check_quorum or self.config.pre_vote) and m.type in (
                MessageType.HEARTBEAT,
                MessageType.APP,
            ):
                # A stale leader (e.g. back from a partition) would otherwise never learn
                # the new term when pre-vote / check-quorum keep us from disrupting it.
                self._send(Message(type=MessageType.APP_RESP, to=m.from_))
            elif m.type == MessageType.PRE_VOTE:
                self._send(Message(type=MessageType.PRE_VOTE_RESP, to=m.from_, term=self.term, reject=True))
            return  # all other stale messages are ignored (Figure 2)

        if m.type == MessageType.HUP:
            self._hup(transfer=False)
        elif m.type in (MessageType.VOTE, MessageType.PRE_VOTE):
            self._handle_vote_request(m)
        elif self.role == Role.LEADER:
            self._step_leader(m)
        elif self.role in (Role.CANDIDATE, Role.PRE_CANDIDATE):
            self._step_candidate(m)
        else:
            self._step_follower(m)

    # ----------------------------------------------------------------- outputs

    def has_ready(self) -> bool:
        prev = self._prev_hard_state
        return bool(
            self.msgs
            or self.log.unstable
            or self.log.unstable_snapshot is not None
            or self.log.has_next_committed()
            or self.read_states
            # field by field: no HardState built on the hot path (the driver asks after every input)
            or self.term != prev.term
            or self.vote != prev.vote
            or self.log.committed != prev.commit
        )

    def ready(self) -> Ready | None:
        """What the driver must do now, or None. Call advance(rd) before feeding more input."""
        self._check_no_outstanding("ready")
        if not self.has_ready():
            return None
        hs = self._hard_state()
        persisted_hs = hs
        if self.config.has_bug(TeachingBug.FORGET_VOTE):
            # TEACHING BUG forget-vote: the vote is not written to stable storage, so a node
            # that restarts can vote again in the same term — two leaders in one term
            # (breaks Election Safety; Raft Figure 2 lists votedFor as persistent state).
            persisted_hs = HardState(term=hs.term, vote=NONE, commit=hs.commit)
        hard_state = persisted_hs if hs != self._prev_hard_state else None
        entries = tuple(self.log.unstable)
        # An installed snapshot is acknowledged (APP_RESP at its index) by this Ready's
        # messages, so like entries it must be durable before they are sent (Raft Figure 2:
        # respond only after updating stable storage). Otherwise a crash leaves the leader's
        # match_index past the follower's log, and their probe/reject exchange never ends.
        must_sync = bool(entries) or self.log.unstable_snapshot is not None or (
            hard_state is not None
            and (hard_state.term != self._prev_hard_state.term or hard_state.vote != self._prev_hard_state.vote)
        )
        if (
            self.config.has_bug(TeachingBug.ACK_BEFORE_PERSIST)
            and self.role == Role.LEADER
            and not (hard_state is not None and hard_state.term != self._prev_hard_state.term)
        ):
            # TEACHING BUG ack-before-persist: the leader treats its new entries as durable
            # without an fsync (it already counted them toward the quorum in _append_entries).
            must_sync = False
        rd = Ready(
            soft_state=SoftState(leader=self.lead, role=self.role),
            hard_state=hard_state,
            entries=entries,
            snapshot=self.log.unstable_snapshot,
            committed_entries=tuple(self.log.next_committed()),
            messages=tuple(self.msgs),
            read_states=tuple(self.read_states),
            must_sync=must_sync,
            send_first=self.role == Role.LEADER
            and self.log.unstable_snapshot is None
            and (hard_state is None or (hard_state.term, hard_state.vote) == (self._prev_hard_state.term,
                                                                            self._prev_hard_state.vote)),
        )
        self.msgs = []
        self.read_states = []
        self._prev_hard_state = hs
        self._outstanding = rd
        return rd

    def advance(self, rd: Ready) -> None:
        """The driver persisted rd's state, sent its messages and applied its committed entries."""
        if self._outstanding is not rd:
            raise DriverError("advance() must be called with the Ready last returned by ready()")
        self._outstanding = None
        if rd.snapshot is not None:
            self.log.stable_snap_to(rd.snapshot.metadata.index)
            self.log.applied = max(self.log.applied, rd.snapshot.metadata.index)
        if rd.entries:
            last = rd.entries[-1]
            self.log.stable_to(last.index, last.term)
            if self.role == Role.LEADER and not self.config.has_bug(TeachingBug.ACK_BEFORE_PERSIST):
                # The leader's own copy counts toward a quorum only now that it is durable:
                # that is what makes "persist, then send, then advance" safe.
                pr = self.tracker.progress.get(self.id)
                if pr is not None and pr.maybe_update(last.index) and self._maybe_commit():
                    self._bcast_append()
        if rd.committed_entries:
            for e in rd.committed_entries:
                if e.type == EntryType.CONF_CHANGE:
                    self._apply_conf_change_entry(e)
                if self.role == Role.LEADER:
                    self.uncommitted_size = max(0, self.uncommitted_size - entry_size(e))
            self.log.applied_to(rd.committed_entries[-1].index)
            if self.role == Role.LEADER:
                self._maybe_auto_leave_joint()

    # ---------------------------------------------------------------- queries

    def status(self) -> Status:
        return Status(
            id=self.id,
            term=self.term,
            vote=self.vote,
            commit=self.log.committed,
            applied=self.log.applied,
            role=self.role,
            leader=self.lead,
            last_index=self.log.last_index(),
            conf_state=self.tracker.config.conf_state(),
            progress={
                i: ProgressView(p.match_index, p.next_index, p.state, p.is_learner, p.recent_active)
                for i, p in sorted(self.tracker.progress.items())
            }
            if self.role == Role.LEADER
            else {},
            lead_transferee=self.lead_transferee,
        )

    def conf_state(self) -> ConfState:
        return self.tracker.config.conf_state()

    def soft_state(self) -> SoftState:
        return SoftState(leader=self.lead, role=self.role)

    @property
    def is_learner(self) -> bool:
        pr = self.tracker.progress.get(self.id)
        return pr is not None and pr.is_learner

    # ------------------------------------------------------ role transitions
    # Every role change goes through these four methods (STYLE.md: one place).

    def become_follower(self, term: int, lead: int, reset_timer: bool = True) -> None:
        self._reset(term, reset_timer)
        self.role = Role.FOLLOWER
        self.lead = lead

    def become_pre_candidate(self) -> None:
        if self.role == Role.LEADER:
            raise DriverError(f"invalid transition [leader -> pre-candidate] in term {self.term}")
        # A pre-candidate changes neither its term nor its vote (dissertation §9.6).
        self.tracker.reset_votes()
        self.role = Role.PRE_CANDIDATE
        self.lead = NONE

    def become_candidate(self) -> None:
        if self.role == Role.LEADER:
            raise DriverError(f"invalid transition [leader -> candidate] in term {self.term}")
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = Role.CANDIDATE

    def become_leader(self) -> None:
        if self.role == Role.FOLLOWER:
            raise DriverError(f"invalid transition [follower -> leader] in term {self.term}")
        self._reset(self.term)
        self.role = Role.LEADER
        self.lead = self.id
        pr = self.tracker.progress.get(self.id)
        if pr is not None:
            # We replicate to ourselves by persisting; never probe ourselves.
            pr.become_replicate()
        # Conservatively treat every entry up to here as possibly holding a conf change
        # not yet applied: no new change until they are (etcd does the same).
        self.pending_conf_index = self.log.last_index()
        self.heartbeat_deadline = self.now + self.config.heartbeat_interval
        self.check_quorum_deadline = self.now + self.config.election_timeout_min
        if self.config.has_bug(TeachingBug.COMMIT_OLD_TERM):
            # TEACHING BUG commit-old-term, part 2: the Raft paper's Figure 8 leader, which
            # starts its term without a no-op. With the no-op, the old-term entries usually
            # travel in the same append as it and commit legitimately with it, which hides
            # the bad rule in _maybe_commit; without it the bad rule decides alone. The
            # leader's own durable log counts toward a quorum from the start.
            if pr is not None:
                pr.maybe_update(self.log.last_index() - len(self.log.unstable))
            self._bcast_append()
            return
        # A no-op entry of our own term (§5.4.2 / §8): committing it commits everything before.
        self._append_entries([Entry(term=0, index=0, data=b"")])

    def _reset(self, term: int, reset_timer: bool = True) -> None:
        if term != self.term:
            self.term = term
            self.vote = NONE
        self.lead = NONE
        if reset_timer:
            self._reset_election_timer()
        self._abort_leader_transfer()
        self.tracker.reset_votes()
        last = self.log.last_index()
        for node_id, old in list(self.tracker.progress.items()):
            pr = Progress(next_index=last + 1, max_inflight=self.config.max_inflight_msgs, is_learner=old.is_learner)
            self.tracker.progress[node_id] = pr
        self.pending_conf_index = 0
        self.uncommitted_size = 0
        self.read_only.reset()
        self.pending_read_index = []

    def _reset_election_timer(self) -> None:
        # Raft §5.2: a fresh random timeout on every reset avoids repeated split votes.
        self.election_reset_at = self.now
        self.election_deadline = self.now + self.rng.uniform(
            self.config.election_timeout_min, self.config.election_timeout_max
        )

    # ------------------------------------------------------------- elections

    def _promotable(self) -> bool:
        pr = self.tracker.progress.get(self.id)
        return pr is not None and not pr.is_learner and self.log.unstable_snapshot is None

    def _has_unapplied_conf_change(self) -> bool:
        if self.log.applied >= self.log.committed:
            return False
        lo = max(self.log.applied + 1, self.log.first_index())
        return any(e.type == EntryType.CONF_CHANGE for e in self.log.slice(lo, self.log.committed + 1))

    def _hup(self, transfer: bool) -> None:
        if self.role == Role.LEADER:
            return
        if not self._promotable():
            return
        if self._has_unapplied_conf_change():
            # Our view of the membership may be stale until these apply; campaigning
            # under the old configuration could elect a leader without a real quorum.
            return
        if self.config.pre_vote and not transfer:
            self._campaign(MessageType.PRE_VOTE)
        else:
            self._campaign(MessageType.VOTE, transfer=transfer)

    def _campaign(self, kind: MessageType, transfer: bool = False) -> None:
        if kind == MessageType.PRE_VOTE:
            self.become_pre_candidate()
            term = self.term + 1  # the term we would campaign in; not adopted yet
        else:
            self.become_candidate()
            term = self.term
        self.tracker.record_vote(self.id, True)
        if self._poll_result() == VoteResult.WON:
            # A single-voter configuration wins at once.
            if kind == MessageType.PRE_VOTE:
                self._campaign(MessageType.VOTE)
            else:
                self.become_leader()
            return
        ctx = CAMPAIGN_TRANSFER if transfer else b""
        last_index, last_term = self.log.last_index(), self.log.last_term()
        for node_id in self.tracker.voter_ids():
            if node_id == self.id:
                continue
            self._send(
                Message(type=kind, to=node_id, term=term, index=last_index, log_term=last_term, context=ctx)
            )

    def _poll_result(self) -> VoteResult:
        cfg = self.tracker.config
        return joint_vote_result(cfg.voters, cfg.voters_outgoing, self.tracker.votes)

    def _handle_vote_request(self, m: Message) -> None:
        # Figure 2, RequestVote receiver: grant if we have not voted for someone else in
        # this term (or it is a pre-vote for a later term) and the candidate's log is at
        # least as up-to-date as ours (§5.4.1).
        can_vote = (
            self.vote == m.from_
            or (self.vote == NONE and self.lead == NONE)
            or (m.type == MessageType.PRE_VOTE and m.term > self.term)
        )
        up_to_date = self.log.is_up_to_date(m.index, m.log_term)
        if self.config.has_bug(TeachingBug.NO_LOG_CHECK):
            # TEACHING BUG no-log-check: grant votes without comparing logs, so a candidate
            # missing committed entries can win (breaks Leader Completeness, Raft §5.4.1).
            up_to_date = True
        resp = MessageType.VOTE_RESP if m.type == MessageType.VOTE else MessageType.PRE_VOTE_RESP
        if can_vote and up_to_date:
            # A granted vote is sent with the candidate's term: for a pre-vote that term
            # is not ours yet, and the candidate must not take the answer as stale.
            self._send(Message(type=resp, to=m.from_, term=m.term))
            if m.type == MessageType.VOTE:
                self._reset_election_timer()
                self.vote = m.from_
        else:
            self._send(Message(type=resp, to=m.from_, term=self.term, reject=True))

    def _step_candidate(self, m: Message) -> None:
        my_resp = MessageType.PRE_VOTE_RESP if self.role == Role.PRE_CANDIDATE else MessageType.VOTE_RESP
        t = m.type
        if t in (MessageType.PROP, MessageType.READ_INDEX, MessageType.TRANSFER_LEADER):
            self._drop(m, "no leader")
        elif t in (MessageType.APP, MessageType.HEARTBEAT, MessageType.SNAP):
            # A leader of our term exists (m.term == term here): stand down and follow it.
            self.become_follower(m.term, m.from_)
            self._step_follower(m)
        elif t == my_resp:
            self.tracker.record_vote(m.from_, not m.reject)
            result = self._poll_result()
            if result == VoteResult.WON:
                if self.role == Role.PRE_CANDIDATE:
                    self._campaign(MessageType.VOTE)
                else:
                    self.become_leader()
                    self._bcast_append()
            elif result == VoteResult.LOST:
                # Pre-candidates also land here; their term is unchanged (§9.6).
                self.become_follower(self.term, NONE)
        # TIMEOUT_NOW and stale responses are ignored by a candidate.

    # -------------------------------------------------------------- follower

    def _step_follower(self, m: Message) -> None:
        t = m.type
        if t == MessageType.PROP:
            if self.lead == NONE:
                self._drop(m, "no leader")
                return
            # Forward to the leader, as etcd does; the proposer learns the outcome by
            # seeing its entry applied (the Member tags entries with request ids).
            self._send(Message(type=MessageType.PROP, to=self.lead, entries=m.entries))
        elif t == MessageType.APP:
            self._reset_election_timer()
            self.lead = m.from_
            self._handle_append(m)
        elif t == MessageType.HEARTBEAT:
            self._reset_election_timer()
            self.lead = m.from_
            self._handle_heartbeat(m)
        elif t == MessageType.SNAP:
            self._reset_election_timer()
            self.lead = m.from_
            self._handle_snapshot(m)
        elif t == MessageType.TRANSFER_LEADER:
            if self.lead == NONE:
                self._drop(m, "no leader to transfer leadership from")
                return
            self._send(Message(type=MessageType.TRANSFER_LEADER, to=self.lead, from_=m.from_))
        elif t == MessageType.TIMEOUT_NOW:
            # The leader asked us to take over (dissertation §3.10): campaign at once,
            # skipping pre-vote and overriding the voters' leader lease.
            self._hup(transfer=True)
        elif t == MessageType.READ_INDEX:
            if self.lead == NONE:
                self._drop(m, "no leader")
                return
            self._send(Message(type=MessageType.READ_INDEX, to=self.lead, context=m.context))
        elif t == MessageType.READ_INDEX_RESP:
            self.read_states.append(ReadState(index=m.index, request_ctx=m.context))

    @staticmethod
    def _drop(m: Message, reason: str) -> None:
        """Refuse an input: loudly to a local caller, silently for a forwarded message."""
        if m.to == NONE:  # built by a public method of this node, not received from a peer
            raise ProposalDropped(reason)

    def _handle_append(self, m: Message) -> None:
        if m.index < self.log.committed:
            # Everything up to our commit index matches the leader's log (Log Matching).
            self._send(Message(type=MessageType.APP_RESP, to=m.from_, index=self.log.committed))
            return
        last_new = self.log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last_new is not None:
            self._send(Message(type=MessageType.APP_RESP, to=m.from_, index=last_new))
            return
        # Reject with a hint for fast backtracking: the last index at or before the
        # probe whose term is <= the probe's term (skips a whole conflicting term at once).
        hint_index = min(m.index, self.log.last_index())
        hint_index, hint_term = self.log.find_conflict_by_term(hint_index, m.log_term)
        self._send(
            Message(
                type=MessageType.APP_RESP,
                to=m.from_,
                index=m.index,
                reject=True,
                reject_hint=hint_index,
                log_term=hint_term,
            )
        )

    def _handle_heartbeat(self, m: Message) -> None:
        # The leader sends min(our match, its commit), so this never passes our log.
        self.log.commit_to(min(m.commit, self.log.last_index()))
        self._send(Message(type=MessageType.HEARTBEAT_RESP, to=m.from_, context=m.context))

    def _handle_snapshot(self, m: Message) -> None:
        assert m.snapshot is not None
        if self._restore(m.snapshot):
            self._send(Message(type=MessageType.APP_RESP, to=m.from_, index=self.log.last_index()))
        else:
            self._send(Message(type=MessageType.APP_RESP, to=m.from_, index=self.log.committed))

    def _restore(self, snap: Snapshot) -> bool:
        meta = snap.metadata
        if meta.index <= self.log.committed:
            return False
        cs = meta.conf_state
        if self.id not in cs.voters + cs.learners + cs.voters_outgoing:
            # A snapshot of a configuration we are not part of: ignore it (etcd does too).
            return False
        if self.log.match_term(meta.index, meta.term):
            # We already have the snapshot's last entry: just move commit forward.
            self.log.commit_to(meta.index)
            return False
        self.log.restore(snap)
        self.tracker.config, self.tracker.progress = confchange.restore(
            cs, self.log.last_index(), self.config.max_inflight_msgs
        )
        return True

    # ---------------------------------------------------------------- leader

    def _tick_leader(self) -> None:
        now = self.now
        if now >= self.check_quorum_deadline:
            self.check_quorum_deadline = now + self.config.election_timeout_min
            self.election_reset_at = now
            if self.config.check_quorum:
                # CheckQuorum (dissertation §6.2): a leader that has not heard from a
                # quorum within an election timeout steps down, so clients stop waiting on it.
                if not self.tracker.quorum_active(self.id):
                    self.become_follower(self.term, NONE)
                    return
                for node_id, pr in self.tracker.progress.items():
                    if node_id != self.id:
                        pr.recent_active = False
        if self.lead_transferee != NONE and now >= self.transfer_deadline:
            self._abort_leader_transfer()
        if now >= self.heartbeat_deadline:
            self.heartbeat_deadline = now + self.config.heartbeat_interval
            self._bcast_heartbeat(self.read_only.last_pending_ctx() or b"")

    def _step_leader(self, m: Message) -> None:
        t = m.type
        if t in (MessageType.PROP, MessageType.TRANSFER_LEADER):
            try:
                if t == MessageType.PROP:
                    self._leader_propose(m)
                else:
                    self._leader_transfer(m.from_)
            except ProposalDropped as e:
                self._drop(m, str(e))
            return
        if t == MessageType.READ_INDEX:
            self._leader_read_index(m)
            return
        pr = self.tracker.progress.get(m.from_)
        if pr is None:
            return  # a message from a node no longer in the configuration
        if t == MessageType.APP_RESP:
            pr.recent_active = True
            self._handle_append_response(m, pr)
        elif t == MessageType.HEARTBEAT_RESP:
            pr.recent_active = True
            pr.probe_sent = False
            if pr.state == ProgressState.REPLICATE and pr.inflights.full():
                # Appends may have been lost; free one slot so replication cannot stall.
                pr.inflights.free_first_one()
            elif pr.state == ProgressState.SNAPSHOT and self.now - pr.snapshot_sent_at > self.config.election_timeout_max:
                # The snapshot (or its answer) was probably lost: probe again, which resends it if needed.
                pr.become_probe()
            if pr.match_index < self.log.last_index():
                self._send_append(m.from_)
            if m.context:
                self._handle_read_ack(m.from_, m.context)
        elif t == MessageType.SNAP_STATUS:
            if pr.state != ProgressState.SNAPSHOT:
                return
            if m.reject:
                pr.pending_snapshot = 0
            pr.become_probe()
            # Wait for the next heartbeat response before probing again.
            pr.probe_sent = True
        elif t == MessageType.UNREACHABLE:
            if pr.state == ProgressState.REPLICATE:
                pr.become_probe()

    def _leader_propose(self, m: Message) -> None:
        if not m.entries:
            raise ProposalDropped("empty proposal")
        if self.id not in self.tracker.progress:
            raise ProposalDropped("this node was removed from the configuration")
        if self.lead_transferee != NONE:
            raise ProposalDropped("leadership transfer in progress")
        entries = list(m.entries)
        for i, e in enumerate(entries):
            if e.type != EntryType.CONF_CHANGE:
                continue
            cc = codec.decode_conf_change(e.data)
            reason = self._conf_change_refusal(cc)
            if reason:
                raise ProposalDropped(reason)
            self.pending_conf_index = self.log.last_index() + i + 1
        self._append_entries(entries)
        self._bcast_append()

    def _conf_change_refusal(self, cc: ConfChange) -> str:
        if self.pending_conf_index > self.log.applied:
            return "possible unapplied conf change"
        joint = self.tracker.config.joint
        if joint and not cc.leave_joint():
            return "must transition out of joint config first"
        if not joint and cc.leave_joint():
            return "not in joint state; refusing empty conf change"
        try:
            self._changed_config(cc)  # dry run: refuse now what would be invalid on apply
        except confchange.ConfChangeError as e:
            return str(e)
        return ""

    def _append_entries(self, entries: list[Entry]) -> None:
        size = sum(entry_size(e) for e in entries)
        limit = self.config.max_uncommitted_entries_size
        if limit and self.uncommitted_size > 0 and self.uncommitted_size + size > limit:
            raise ProposalDropped("too many uncommitted entries")
        self.uncommitted_size += size
        last = self.log.last_index()
        stamped = [Entry(term=self.term, index=last + 1 + i, type=e.type, data=e.data) for i, e in enumerate(entries)]
        last = self.log.append(stamped)
        if self.config.has_bug(TeachingBug.ACK_BEFORE_PERSIST):
            # TEACHING BUG ack-before-persist: count our own copy toward the quorum before the
            # driver has made it durable; a crash can then lose an entry the cluster committed.
            pr = self.tracker.progress.get(self.id)
            if pr is not None:
                pr.maybe_update(last)
                self._maybe_commit()

    def _maybe_commit(self) -> bool:
        """Advance commit to what a quorum has; True if it moved."""
        mci = self.tracker.committed()
        if self.config.has_bug(TeachingBug.COMMIT_OLD_TERM):
            # TEACHING BUG commit-old-term: count replicas for entries of earlier terms too.
            # Raft §5.4.2 (Figure 8): such an entry can still be overwritten by a leader
            # that never saw it, so only entries of the current term may commit by counting.
            if mci > self.log.committed and mci <= self.log.last_index():
                self.log.commit_to(mci)
                moved = True
            else:
                moved = False
        else:
            moved = self.log.maybe_commit(mci, self.term)
        if moved:
            self._release_pending_read_index()
        return moved

    def _committed_entry_in_current_term(self) -> bool:
        return self.log.term(self.log.committed) == self.term

    def _handle_append_response(self, m: Message, pr: Progress) -> None:
        if m.reject:
            next_probe = m.reject_hint
            if m.log_term > 0:
                # Fast backtracking: jump past every entry of ours whose term is above
                # the follower's term at its hint; they cannot match.
                next_probe, _ = self.log.find_conflict_by_term(m.reject_hint, m.log_term)
            if pr.maybe_decr_to(m.index, next_probe):
                if pr.state == ProgressState.REPLICATE:
                    pr.become_probe()
                self._send_append(m.from_)
            return
        old_paused = pr.is_paused()
        if not pr.maybe_update(m.index):
            return
        if pr.state == ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state == ProgressState.SNAPSHOT and pr.match_index + 1 >= self.log.first_index():
            # The follower has caught up through the snapshot; resume normal replication.
            pr.become_probe()
            pr.become_replicate()
        elif pr.state == ProgressState.REPLICATE:
            pr.inflights.free_le(m.index)
        if self._maybe_commit():
            self._bcast_append()
        elif old_paused:
            self._send_append(m.from_)
        # Fill the window: send as long as there is something to send and room for it.
        while self._send_append(m.from_, send_if_empty=False):
            pass
        if m.from_ == self.lead_transferee and pr.match_index == self.log.last_index():
            self._send(Message(type=MessageType.TIMEOUT_NOW, to=m.from_))

    def _send_append(self, to: int, send_if_empty: bool = True) -> bool:
        pr = self.tracker.progress[to]
        if pr.is_paused():
            return False
        prev_index = pr.next_index - 1
        prev_term = self.log.term(prev_index)
        ents: list[Entry] = []
        compacted = prev_term is None
        if not compacted:
            try:
                ents = self.log.entries_from(pr.next_index, self.config.max_size_per_msg)
            except ErrCompactedLog:
                compacted = True
        if compacted:
            return self._send_snapshot(to, pr)
        if not ents and not send_if_empty:
            return False
        assert prev_term is not None
        self._send(
            Message(
                type=MessageType.APP,
                to=to,
                index=prev_index,
                log_term=prev_term,
                entries=tuple(ents),
                commit=self.log.committed,
            )
        )
        pr.sent_entries(ents[-1].index if ents else prev_index, len(ents))
        return True

    def _send_snapshot(self, to: int, pr: Progress) -> bool:
        if not pr.recent_active:
            return False  # do not ship a snapshot to a node that may be down
        try:
            snap = self.log.snapshot()
        except ErrUnavailable:
            return False
        if snap.is_empty:
            return False
        self._send(Message(type=MessageType.SNAP, to=to, snapshot=snap))
        pr.become_snapshot(snap.metadata.index)
        pr.snapshot_sent_at = self.now
        return True

    def _bcast_append(self) -> None:
        for node_id in self.tracker.peer_ids():
            if node_id != self.id:
                self._send_append(node_id)

    def _bcast_heartbeat(self, ctx: bytes) -> None:
        for node_id in self.tracker.peer_ids():
            if node_id == self.id:
                continue
            pr = self.tracker.progress[node_id]
            # Never tell a follower to commit past what it is known to hold.
            commit = min(pr.match_index, self.log.committed)
            self._send(Message(type=MessageType.HEARTBEAT, to=node_id, commit=commit, context=ctx))

    # --- ReadIndex (dissertation §6.4) ---

    def _leader_read_index(self, m: Message) -> None:
        if self.tracker.is_singleton():
            self._answer_read(m, self.log.committed)
            return
        if not self._committed_entry_in_current_term():
            # A new leader does not know the commit index until an entry of its own term
            # commits; hold the read until then.
            self.pending_read_index.append(m)
            return
        self.read_only.add_request(self.log.committed, m)
        self.read_only.recv_ack(self.id, m.context)
        self._bcast_heartbeat(m.context)

    def _release_pending_read_index(self) -> None:
        if self.pending_read_index and self._committed_entry_in_current_term():
            pending, self.pending_read_index = self.pending_read_index, []
            for m in pending:
                self._leader_read_index(m)

    def _handle_read_ack(self, from_: int, ctx: bytes) -> None:
        acks = self.read_only.recv_ack(from_, ctx)
        if acks is None:
            return
        cfg = self.tracker.config
        if joint_vote_result(cfg.voters, cfg.voters_outgoing, acks) != VoteResult.WON:
            return
        for rs in self.read_only.advance(ctx):
            self._answer_read(rs.request, rs.index)

    def _answer_read(self, m: Message, index: int) -> None:
        if m.from_ in (NONE, self.id):
            self.read_states.append(ReadState(index=index, request_ctx=m.context))
        else:
            self._send(Message(type=MessageType.READ_INDEX_RESP, to=m.from_, index=index, context=m.context))

    # --- leadership transfer (dissertation §3.10) ---

    def _leader_transfer(self, transferee: int) -> None:
        pr = self.tracker.progress.get(transferee)
        if pr is None or pr.is_learner:
            raise ProposalDropped(f"cannot transfer leadership to {transferee}: not a voter")
        if self.lead_transferee != NONE:
            if self.lead_transferee == transferee:
                return  # already in progress
            self._abort_leader_transfer()
        if transferee == self.id:
            return  # already leader
        self.transfer_deadline = self.now + self.config.transfer_timeout
        self.lead_transferee = transferee
        if pr.match_index == self.log.last_index():
            self._send(Message(type=MessageType.TIMEOUT_NOW, to=transferee))
        else:
            self._send_append(transferee)

    def _abort_leader_transfer(self) -> None:
        self.lead_transferee = NONE

    # --- membership changes ---

    def _changed_config(self, cc: ConfChange) -> confchange.Changed:
        tr = self.tracker
        if cc.leave_joint():
            return confchange.leave_joint(tr.config, tr.progress)
        joint, auto_leave = cc.enter_joint()
        if joint:
            return confchange.enter_joint(
                tr.config, tr.progress, self.log.last_index(), tr.max_inflight, auto_leave, cc.changes
            )
        return confchange.simple(tr.config, tr.progress, self.log.last_index(), tr.max_inflight, cc.changes)

    def _apply_conf_change_entry(self, e: Entry) -> None:
        try:
            cc = codec.decode_conf_change(e.data)
            cfg, prs = self._changed_config(cc)
        except (confchange.ConfChangeError, CorruptRecord) as err:
            # Deterministic on every member (same log, same config): skip it everywhere.
            self.rejected_conf_changes.append((e.index, str(err)))
            return
        self.tracker.config, self.tracker.progress = cfg, prs
        self._switched_config()

    def _switched_config(self) -> None:
        pr = self.tracker.progress.get(self.id)
        if self.role != Role.LEADER:
            return
        if pr is None or pr.is_learner:
            # Dissertation §4.2.2: a leader removed from the configuration steps down once the
            # change is committed. Hand over to the most caught-up voter so the gap is short.
            best = max(
                (i for i in self.tracker.voter_ids() if i in self.tracker.progress),
                key=lambda i: (self.tracker.progress[i].match_index, -i),
                default=NONE,
            )
            self.become_follower(self.term, NONE)
            if best != NONE:
                self._send(Message(type=MessageType.TIMEOUT_NOW, to=best))
            return
        if self.lead_transferee != NONE and not self.tracker.is_voter(self.lead_transferee):
            self._abort_leader_transfer()
        if self._maybe_commit():
            self._bcast_append()
        else:
            for node_id in self.tracker.peer_ids():
                if node_id != self.id:
                    self._send_append(node_id, send_if_empty=False)

    def _maybe_auto_leave_joint(self) -> None:
        cfg = self.tracker.config
        if cfg.joint and cfg.auto_leave and self.pending_conf_index <= self.log.applied:
            # JOINT_IMPLICIT / AUTO: leave the joint configuration as soon as entering it applied.
            try:
                self.propose_conf_change_unchecked(ConfChange())
            except ProposalDropped:
                pass  # e.g. a transfer in progress: tried again after the next apply

    def propose_conf_change_unchecked(self, cc: ConfChange) -> None:
        self._leader_propose(
            Message(
                type=MessageType.PROP,
                from_=self.id,
                entries=(Entry(term=0, index=0, type=EntryType.CONF_CHANGE, data=codec.encode_conf_change(cc)),),
            )
        )

    # ---------------------------------------------------------------- helpers

    def _hard_state(self) -> HardState:
        return HardState(term=self.term, vote=self.vote, commit=self.log.committed)

    def _send(self, m: Message) -> None:
        # Stamp sender and term. Vote traffic carries the term its caller chose (a pre-vote's
        # is a future term); forwarded requests carry term 0, as etcd's do; all else our term.
        if m.type in _VOTE_TRAFFIC:
            term = m.term
        elif m.type in _FORWARDED:
            term = 0
        else:
            term = self.term
        # A forwarded TRANSFER_LEADER names the transferee in from_, as a local one does.
        from_ = m.from_ if m.type == MessageType.TRANSFER_LEADER else self.id
        self.msgs.append(
            Message(
                type=m.type,
                to=m.to,
                from_=from_,
                term=term,
                log_term=m.log_term,
                index=m.index,
                entries=m.entries,
                commit=m.commit,
                snapshot=m.snapshot,
                reject=m.reject,
                reject_hint=m.reject_hint,
                context=m.context,
            )
        )

    def _check_no_outstanding(self, what: str) -> None:
        if self._outstanding is not None:
            raise DriverError(f"{what}() called before advance() of the outstanding Ready")

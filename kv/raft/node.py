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

This module holds the node's state, its inputs and outputs, role changes and
timers; the protocol's parts live beside it and are bound as methods:
election.py, follower.py, leader.py, replication.py, membership.py (and the
Ready and Status it hands out, ready.py).

The rules implemented here cite the Raft paper (Ongaro & Ousterhout 2014,
"§5.x", "Figure 2") and Ongaro's dissertation (2014, "dissertation §x.y").
"""

from __future__ import annotations

import random

from kv.bugs import TeachingBug
from kv import codec  # module import: kv.codec imports kv.raft.messages, so bind late
from kv.errors import ConfigError
from kv.raft import confchange, election, follower, leader, membership, replication
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
    SoftState,
)
from kv.raft.election import CAMPAIGN_TRANSFER
from kv.raft.progress import Progress
from kv.raft.readonly import ReadOnly
from kv.raft.ready import DriverError, ProgressView, Ready, Status
from kv.raft.storage import Storage, entry_size
from kv.raft.tracker import ProgressTracker

_VOTE_TRAFFIC = frozenset(
    {MessageType.VOTE, MessageType.VOTE_RESP, MessageType.PRE_VOTE, MessageType.PRE_VOTE_RESP}
)
_FORWARDED = frozenset({MessageType.PROP, MessageType.READ_INDEX, MessageType.TRANSFER_LEADER})



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

    # The protocol's parts, each in its own module and bound here as methods
    # (they read and write this node's state as methods do):
    # elections (kv/raft/election.py), the follower (follower.py), the leader
    # (leader.py), its log replication (replication.py) and membership changes
    # (membership.py).

    _promotable = election.promotable
    _has_unapplied_conf_change = election.has_unapplied_conf_change
    _hup = election.hup
    _campaign = election.campaign
    _poll_result = election.poll_result
    _handle_vote_request = election.handle_vote_request
    _step_candidate = election.step_candidate

    _step_follower = follower.step_follower
    _drop = staticmethod(follower.drop)
    _handle_append = follower.handle_append
    _handle_heartbeat = follower.handle_heartbeat
    _handle_snapshot = follower.handle_snapshot
    _restore = follower.restore

    _tick_leader = leader.tick_leader
    _step_leader = leader.step_leader
    _leader_propose = leader.leader_propose
    _conf_change_refusal = leader.conf_change_refusal
    _leader_read_index = leader.leader_read_index
    _release_pending_read_index = leader.release_pending_read_index
    _handle_read_ack = leader.handle_read_ack
    _answer_read = leader.answer_read
    _leader_transfer = leader.leader_transfer
    _abort_leader_transfer = leader.abort_leader_transfer

    _append_entries = replication.append_entries
    _maybe_commit = replication.maybe_commit
    _committed_entry_in_current_term = replication.committed_entry_in_current_term
    _handle_append_response = replication.handle_append_response
    _send_append = replication.send_append
    _send_snapshot = replication.send_snapshot
    _bcast_append = replication.bcast_append
    _bcast_heartbeat = replication.bcast_heartbeat

    _changed_config = membership.changed_config
    _apply_conf_change_entry = membership.apply_conf_change_entry
    _switched_config = membership.switched_config
    _maybe_auto_leave_joint = membership.maybe_auto_leave_joint
    propose_conf_change_unchecked = membership.propose_conf_change_unchecked

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

"""Figure 16 of the Raft paper: how long a 5-server cluster is without a leader after the leader crashes.

Reproduces §9.3 of Ongaro & Ousterhout, "In Search of an Understandable
Consensus Algorithm", USENIX ATC 2014 (repeated in Ongaro's dissertation, §9.4),
with the real core (``kv.raft.RaftNode``, unchanged) driven by a small
event-queue world of its own. The paper's set-up, and how it is modelled:

* five servers, "a broadcast time [...] of roughly 15ms": every message takes an
  independent one-way ``--latency`` (default ``uniform:0.004:0.009``: the
  slowest of four round trips averages about 15 ms; the run prints the value for
  the distributions it used). The dissertation (Figure 9.8) says that 15 ms was
  "network round trip plus disk write" on gigabit Ethernet and SSDs; ``--disk``
  adds a disk write before a node sends what must be durable (a new term or
  vote, entries), during which it handles nothing else, as etcd's raft loop.
  It is off by default: the core persists a candidate's term and vote before
  its RequestVotes leave (Ready: persist, then send), so a write as long as the
  timeout's random range makes every election a split vote (see README);
* heartbeat interval half the minimum election timeout; election timeouts
  uniform in [min, max] (``RaftConfig`` draws them exactly); PreVote and
  CheckQuorum off;
* "the servers in each trial had different log lengths, so two of the four
  servers were not eligible to become leader" (dissertation): after node 1 wins
  the first election, it replicates ``len(FOLLOWER_EXTRA_ENTRIES) - 1`` entries
  one at a time while the network drops its appends past each follower's share,
  so the four followers hold 0, 1, 2 and 3 of them (shuffled per trial). Only
  the two longest logs can collect three votes;
* "it synchronized the old leader's heartbeat RPCs before causing the old leader
  to exit": the leader is crashed at a uniformly random time within the
  heartbeat interval that starts with one of its heartbeat broadcasts;
* downtime runs "from when the old leader crashed until the other servers
  received the new leader's first heartbeat" (dissertation): until some survivor
  leads a term and every other survivor is in that term and names it as leader.

The set-up happens at time 0 on an instant network and disk; then messages take
a constant latency that ramps up to the distribution's lower parameter over
``RAMP_HEARTBEATS`` heartbeats (so no heartbeat comes later than in the steady
state, and no stray election starts), then ``--latency`` itself (and ``--disk``)
for ``WARMUP_HEARTBEATS`` heartbeats before the crash. Should an election start
before the crash anyway (a latency tail longer than the election timeout), the
trial is set up again from a derived seed, at most ``MAX_SETUP_ATTEMPTS`` times.

Every trial has its own random generators, derived from the seed, the range and
the trial number (``sim.seeds.child_rng``), so results depend neither on
``--jobs`` nor on which other ranges run.

The election timer follows the paper's Figure 2 (and LogCabin, the paper's
implementation): a server that learns of a higher term, e.g. from a candidate
whose log is too short to get its vote, keeps its timer; only hearing the
leader or granting a vote resets it. (etcd-io/raft resets it there; measuring
this figure is what showed the cost: elections 2-4x longer.)
"""

from __future__ import annotations

import heapq
import math
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from kv.raft import MemoryStorage, Message, MessageType, RaftConfig, RaftNode, Role
from sim.distributions import Latency
from sim.seeds import child_rng

IDS = (1, 2, 3, 4, 5)
FIRST_LEADER = 1
# Entries beyond the common log that each follower holds when the leader crashes
# (shuffled over the followers each trial): all lengths differ, and the two
# shortest logs cannot collect three votes among the four survivors.
FOLLOWER_EXTRA_ENTRIES = (0, 1, 2, 3)
RAMP_HEARTBEATS = 4
WARMUP_HEARTBEATS = 3
MAX_SETUP_ATTEMPTS = 20
DEFAULT_LATENCY = "uniform:0.004:0.009"
DEFAULT_MAX_DOWNTIME = 60.0
CHUNK = 20  # trials per task handed to a worker process


@dataclass(frozen=True, slots=True)
class TimeoutRange:
    """An election timeout range of the figure, in milliseconds."""

    min_ms: float
    max_ms: float

    def __post_init__(self) -> None:
        if not 0 < self.min_ms <= self.max_ms:
            raise ValueError(f"timeout range {self.label}: need 0 < MIN <= MAX (milliseconds)")

    @property
    def label(self) -> str:
        return f"{self.min_ms:g}-{self.max_ms:g}"

    @property
    def no_randomness(self) -> bool:
        return self.min_ms == self.max_ms

    @staticmethod
    def parse(text: str) -> TimeoutRange:
        lo, sep, hi = text.strip().removesuffix("ms").partition("-")
        try:
            if not sep:
                raise ValueError
            return TimeoutRange(float(lo), float(hi))
        except ValueError as e:
            detail = f": {e}" if str(e) else ""
            raise ValueError(f"{text!r} is not a timeout range MIN-MAX in milliseconds{detail}") from None


# The figure's two panels, in the paper's legend order. 150-300 is in both; it runs once.
TOP_PANEL = tuple(TimeoutRange(150, m) for m in (150, 151, 155, 175, 200, 300))
BOTTOM_PANEL = tuple(TimeoutRange(lo, 2 * lo) for lo in (12, 25, 50, 100, 150))
FIGURE_RANGES = TOP_PANEL + BOTTOM_PANEL[:-1]


@dataclass(frozen=True, slots=True)
class PaperStatement:
    """A number §9.3 states in its text, and the figure16.json metric that measures the same thing."""

    range_label: str
    metric: str  # a key of the range's entry in figure16.json
    paper_ms: float
    relation: str  # "=": the paper's measurement; ">": a bound it states
    quote: str


# Ongaro & Ousterhout, USENIX ATC 2014, §9.3 (the same text is in the dissertation, §9.4).
PAPER_STATEMENTS: tuple[PaperStatement, ...] = (
    PaperStatement("150-150", "min_ms", 10_000, ">",
                   "In the absence of randomness, leader election consistently took longer than "
                   "10 seconds in our tests due to many split votes."),
    PaperStatement("150-155", "median_ms", 287, "=",
                   "Adding just 5ms of randomness helps significantly, resulting in a median downtime of 287ms."),
    PaperStatement("150-200", "max_ms", 513, "=",
                   "with 50ms of randomness the worst-case completion time (over 1000 trials) was 513ms."),
    PaperStatement("12-24", "mean_ms", 35, "=",
                   "With an election timeout of 12-24ms, it takes only 35ms on average to elect a leader"),
    PaperStatement("12-24", "max_ms", 152, "=", "(the longest trial took 152ms)."),
)
# Stated for every range; compared with each range's min_ms.
PAPER_SMALLEST_DOWNTIME = ("The leader was crashed uniformly randomly within its heartbeat interval, which was half "
                           "of the minimum election timeout for all tests. Thus, the smallest possible downtime "
                           "was about half of the minimum election timeout.")
# Figure 16's caption: "a broadcast time of roughly 15ms".
PAPER_BROADCAST_MS = 15.0


# ------------------------------------------------------------------- one trial


@dataclass(frozen=True, slots=True)
class Conditions:
    """Everything a trial depends on besides its range, seed and number."""

    latency: Latency = field(default_factory=lambda: Latency.parse(DEFAULT_LATENCY))  # one way, per message
    disk: Latency | None = None  # a write before a Ready that must be durable is sent
    equal_logs: bool = False  # every follower holds the whole log: no survivor is ineligible
    max_downtime: float = DEFAULT_MAX_DOWNTIME  # give up on a trial after this many simulated seconds

    def spec(self) -> str:
        disk = self.disk.spec() if self.disk else "none"
        logs = "equal" if self.equal_logs else "different"
        return f"latency={self.latency.spec()} disk={disk} logs={logs} max-downtime={self.max_downtime:g}s"

    def broadcast_time(self, seed: int, samples: int = 20_000) -> float:
        """Mean seconds to send to the four others and hear back from all (round trip plus disk write)."""
        rng = child_rng(seed, "figure16", "broadcast")
        disk = self.disk

        def round_trip() -> float:
            return self.latency.sample(rng) + (disk.sample(rng) if disk else 0.0) + self.latency.sample(rng)

        return statistics.fmean(max(round_trip() for _ in IDS[1:]) for _ in range(samples))


@dataclass(frozen=True, slots=True)
class TrialResult:
    index: int
    downtime: float  # seconds from the crash until the new leader is known (the cap if censored)
    terms: int  # election terms from the crashed leader's to the new leader's
    split_votes: int  # of those terms, how many had more than one candidate
    candidacies: int  # times a survivor became candidate
    winner: int  # 0 if censored
    winner_extra_entries: int  # how many of the FOLLOWER_EXTRA_ENTRIES the winner held
    censored: bool  # no leader known within max_downtime
    setup_attempts: int


class SetupDisturbed(Exception):
    """An election started before the crash: the trial no longer has the paper's set-up."""


class Figure16Error(RuntimeError):
    """The experiment cannot run with these parameters."""


class Figure16Trial:
    """Five RaftNodes on a modelled network, one leader crash, one measured election.

    The loop is DESIGN.md's driver loop for five nodes at once: the next event is
    the earliest message delivery or node deadline; the node is ticked to that
    time, fed the message, and its Readies are drained (persist, send, advance).
    """

    def __init__(self, timeout: TimeoutRange, conditions: Conditions, seed: int, index: int,
                 attempt: int = 0) -> None:
        names = ("figure16", timeout.label, index, attempt)
        self.timeout = timeout
        self.heartbeat = timeout.min_ms / 2000
        self.max_downtime = conditions.max_downtime
        self.index = index
        self.attempt = attempt
        self.latency = conditions.latency
        self.disk = conditions.disk
        self.net_rng = child_rng(seed, *names, "network")
        self.disk_rng = child_rng(seed, *names, "disk")
        plan = child_rng(seed, *names, "plan")
        extra = list(FOLLOWER_EXTRA_ENTRIES)
        plan.shuffle(extra)
        if conditions.equal_logs:
            extra = [max(extra)] * len(extra)
        self.extra_entries: dict[int, int] = dict(zip((i for i in IDS if i != FIRST_LEADER), extra))
        self.crash_offset = plan.uniform(0.0, self.heartbeat)
        self.now = 0.0
        self.storages = {i: MemoryStorage() for i in IDS}
        self.nodes: dict[int, RaftNode] = {
            i: RaftNode(self._config(i), self.storages[i], child_rng(seed, *names, "node", i), initial_voters=IDS)
            for i in IDS
        }
        self.busy_until = {i: 0.0 for i in IDS}  # a node writing to disk handles nothing else
        self.queue: list[tuple[float, int, Message]] = []
        self._seq = 0
        self.set_up_network: float | None = 0.0  # while setting up: latency ramps up until this time
        self.append_limit: dict[int, int] | None = None  # highest index the network lets through to a follower
        self.crashed_at: float | None = None
        self.crash_term = 0
        self.candidates: dict[int, set[int]] = {}  # term -> survivors that stood in it, after the crash
        self.candidacies = 0

    def _config(self, node_id: int) -> RaftConfig:
        return RaftConfig(
            id=node_id,
            election_timeout_min=self.timeout.min_ms / 1000,
            election_timeout_max=self.timeout.max_ms / 1000,
            heartbeat_interval=self.heartbeat,
            pre_vote=False,
            check_quorum=False,
        )

    # --- the driver loop ---

    def _process(self, node_id: int) -> None:
        node = self.nodes[node_id]
        while (rd := node.ready()) is not None:
            self.storages[node_id].save(rd.hard_state, rd.entries, rd.snapshot)
            if rd.must_sync and self.disk is not None and self.set_up_network is None:
                # Persist, then send (Raft Figure 2): the messages leave after the disk write.
                start = max(self.now, self.busy_until[node_id])
                self.busy_until[node_id] = start + self.disk.sample(self.disk_rng)
            for m in rd.messages:
                self._send(m, max(self.now, self.busy_until[node_id]))
            node.advance(rd)
        if self.crashed_at is not None and node.role == Role.CANDIDATE:
            stood = self.candidates.setdefault(node.term, set())
            if node_id not in stood:
                stood.add(node_id)
                self.candidacies += 1

    def _send(self, m: Message, at: float) -> None:
        if self.append_limit is not None and m.type == MessageType.APP and m.entries:
            if m.entries[-1].index > self.append_limit.get(m.to, m.entries[-1].index):
                return  # the set-up's lost append: this follower keeps a shorter log
        ramp = self.set_up_network
        if ramp is None:
            delay = self.latency.sample(self.net_rng)
        else:
            delay = self.latency.a * min(1.0, self.now / ramp) if ramp > 0 else 0.0
        self._push(at + delay, m)

    def _push(self, at: float, m: Message) -> None:
        self._seq += 1
        heapq.heappush(self.queue, (at, self._seq, m))

    def _step(self, until: float) -> bool:
        """Handle the next event at or before `until`; False if there is none."""
        msg_at = self.queue[0][0] if self.queue else math.inf
        timer_at, node_id = min((max(n.deadline(), self.busy_until[i]), i) for i, n in self.nodes.items())
        if min(msg_at, timer_at) > until:
            return False
        if msg_at <= timer_at:
            self.now = max(self.now, msg_at)
            m = heapq.heappop(self.queue)[2]
            node = self.nodes.get(m.to)
            if node is None:
                pass  # to the crashed leader: lost
            elif self.busy_until[m.to] > self.now:
                self._push(self.busy_until[m.to], m)  # waits, in order, until the disk write is done
            else:
                node.tick(self.now)
                self._process(m.to)
                node.step(m)
                self._process(m.to)
        else:
            self.now = max(self.now, timer_at)
            self.nodes[node_id].tick(self.now)
            self._process(node_id)
        return True

    def _run_until(self, until: float, done: Callable[[], bool] | None = None) -> bool:
        """Handle events up to `until`, or until done(); whether done() holds."""
        while not (done is not None and done()):
            if not self._step(until):
                self.now = max(self.now, until)
                return done is not None and done()
        return True

    # --- the experiment ---

    def known_leader(self) -> int | None:
        """The survivor that leads a term every other survivor is in and names as its leader, if any."""
        for i, n in self.nodes.items():
            if n.role == Role.LEADER and all(
                o.term == n.term and o.lead == i for j, o in self.nodes.items() if j != i
            ):
                return i
        return None

    def set_up(self) -> None:
        """Elect node 1, give the followers logs of different lengths, run to the crash and crash node 1."""
        for i in IDS:
            self._process(i)  # the bootstrap membership entries
        leader = self.nodes[FIRST_LEADER]

        def everyone_at(lengths: dict[int, int]) -> bool:
            return all(self.storages[i].last_index() == n for i, n in lengths.items())

        # At time 0, on an instant network: the first election, then each entry to some followers.
        leader.tick(self.now)
        leader.campaign()
        self._process(FIRST_LEADER)
        self._run_until(0.0)
        base = self.storages[FIRST_LEADER].last_index()  # the new leader's no-op
        if leader.role != Role.LEADER or not everyone_at({i: base for i in IDS}):
            raise SetupDisturbed("the first election did not go as planned")
        self.append_limit = {i: base + n for i, n in self.extra_entries.items()}
        for k in range(1, len(FOLLOWER_EXTRA_ENTRIES)):
            leader.tick(self.now)
            leader.propose(f"figure16/{k}".encode())
            self._process(FIRST_LEADER)
            self._run_until(0.0)
            if not everyone_at({i: base + min(k, self.extra_entries.get(i, k)) for i in IDS}):
                raise SetupDisturbed(f"entry {k} was not replicated as planned")
        # Latency ramps up to the distribution's lower parameter, then takes its real values:
        # no heartbeat is ever later than in the steady state, so no stray election starts.
        self.set_up_network = RAMP_HEARTBEATS * self.heartbeat
        self._run_until(self.set_up_network)
        self.set_up_network = None
        self._run_until(self.now + WARMUP_HEARTBEATS * self.heartbeat)
        broadcast_at = leader.heartbeat_deadline
        self._run_until(broadcast_at)  # the synchronized heartbeat broadcast
        self._run_until(broadcast_at + self.crash_offset)
        if leader.role != Role.LEADER or self.known_leader() != FIRST_LEADER:
            raise SetupDisturbed("an election started before the crash")
        # The crash: the leader's volatile state and future messages are gone; what it has
        # sent is on the wire and arrives. The set-up's lost appends end here.
        self.crash_term = leader.term
        del self.nodes[FIRST_LEADER]
        self.crashed_at = self.now
        self.append_limit = None

    def run(self) -> TrialResult:
        self.set_up()
        assert self.crashed_at is not None
        cap = self.crashed_at + self.max_downtime
        winner = self.known_leader() if self._run_until(cap, lambda: self.known_leader() is not None) else None
        new_term = max(n.term for n in self.nodes.values())
        return TrialResult(
            index=self.index,
            downtime=(self.now if winner is not None else cap) - self.crashed_at,
            terms=new_term - self.crash_term,
            split_votes=sum(1 for t, c in self.candidates.items() if t > self.crash_term and len(c) > 1),
            candidacies=self.candidacies,
            winner=winner or 0,
            winner_extra_entries=self.extra_entries.get(winner or 0, -1),
            censored=winner is None,
            setup_attempts=self.attempt + 1,
        )


def run_trial(timeout: TimeoutRange, conditions: Conditions, seed: int, index: int) -> TrialResult:
    """One trial; set up again from a derived seed if an election disturbed the set-up."""
    for attempt in range(MAX_SETUP_ATTEMPTS):
        try:
            return Figure16Trial(timeout, conditions, seed, index, attempt).run()
        except SetupDisturbed:
            continue
    raise Figure16Error(
        f"range {timeout.label}: {MAX_SETUP_ATTEMPTS} set-ups in a row saw an election before the crash; "
        f"latency {conditions.latency.spec()} is too slow for this election timeout"
    )


# ------------------------------------------------------------- many trials


def _run_chunk(task: tuple[TimeoutRange, Conditions, int, int, int]) -> tuple[str, list[TrialResult]]:
    timeout, conditions, seed, start, stop = task
    return timeout.label, [run_trial(timeout, conditions, seed, i) for i in range(start, stop)]


def run_ranges(ranges: Sequence[TimeoutRange], trials: Callable[[TimeoutRange], int], conditions: Conditions,
               seed: int, jobs: int = 1, progress: bool = False) -> dict[str, list[TrialResult]]:
    """Every range's trials, in trial order; the same for any `jobs`."""
    tasks = []
    for r in sorted(ranges, key=lambda r: not r.no_randomness):  # the long ones first
        n, chunk = trials(r), (1 if r.no_randomness else CHUNK)
        tasks += [(r, conditions, seed, s, min(s + chunk, n)) for s in range(0, n, chunk)]
    out: dict[str, list[TrialResult]] = {r.label: [] for r in ranges}
    from tqdm import tqdm

    with tqdm(total=sum(trials(r) for r in ranges), unit="trial", disable=not progress, file=sys.stderr) as bar:
        def take(label: str, results: list[TrialResult]) -> None:
            out[label] += results
            bar.update(len(results))

        if jobs <= 1:
            for task in tasks:
                take(*_run_chunk(task))
        else:
            from concurrent.futures import ProcessPoolExecutor, as_completed

            with ProcessPoolExecutor(max_workers=jobs) as pool:
                for fut in as_completed([pool.submit(_run_chunk, t) for t in tasks]):
                    take(*fut.result())
    return {label: sorted(rs, key=lambda t: t.index) for label, rs in out.items()}


@dataclass(frozen=True, slots=True)
class RangeSummary:
    trials: int
    median_ms: float
    mean_ms: float
    p99_ms: float  # nearest rank
    max_ms: float
    min_ms: float
    split_vote_trials: int  # trials with at least one term that had several candidates
    mean_terms: float  # election terms per trial (1: the first election succeeded)
    censored: int  # trials without a known leader at --max-downtime (counted at the cap)
    downtimes_ms: tuple[float, ...] = field(default=(), repr=False)  # sorted, for the CDF


def summarize(results: Sequence[TrialResult]) -> RangeSummary:
    ms = sorted(t.downtime * 1000 for t in results)
    n = len(ms)
    return RangeSummary(
        trials=n,
        median_ms=round(statistics.median(ms), 3),
        mean_ms=round(statistics.fmean(ms), 3),
        p99_ms=round(ms[max(0, math.ceil(0.99 * n) - 1)], 3),
        max_ms=round(ms[-1], 3),
        min_ms=round(ms[0], 3),
        split_vote_trials=sum(1 for t in results if t.split_votes),
        mean_terms=round(statistics.fmean(t.terms for t in results), 3),
        censored=sum(1 for t in results if t.censored),
        downtimes_ms=tuple(ms),
    )


def summary_json(summaries: dict[str, RangeSummary]) -> dict[str, dict[str, Any]]:
    return {label: {k: v for k, v in asdict(s).items() if k != "downtimes_ms"} for label, s in summaries.items()}


def comparison(summaries: dict[str, RangeSummary]) -> list[str]:
    """Our value beside each number the paper states, one line each."""
    lines = []
    for st in PAPER_STATEMENTS:
        s = summaries.get(st.range_label)
        if s is not None:
            paper = f"{st.relation}{st.paper_ms:g}" if st.relation != "=" else f"{st.paper_ms:g}"
            lines.append(f"{st.range_label:>8} {st.metric:<9} ours {getattr(s, st.metric):9.1f}  paper {paper:>7}  "
                         f'"{st.quote}"')
    for label, s in summaries.items():
        half = TimeoutRange.parse(label).min_ms / 2
        lines.append(f"{label:>8} {'min_ms':<9} ours {s.min_ms:9.1f}  paper {'~' + format(half, 'g'):>7}  "
                     "(smallest possible: half the minimum election timeout)")
    return lines


def format_table(summaries: dict[str, RangeSummary]) -> str:
    rows = [f"{'range ms':>9} {'trials':>6} {'median':>8} {'mean':>8} {'p99':>8} {'max':>8} {'min':>7} "
            f"{'terms':>5} {'split':>5} {'capped':>6}"]
    for label, s in summaries.items():
        rows.append(f"{label:>9} {s.trials:>6} {s.median_ms:8.1f} {s.mean_ms:8.1f} {s.p99_ms:8.1f} {s.max_ms:8.1f} "
                    f"{s.min_ms:7.1f} {s.mean_terms:5.2f} {s.split_vote_trials:>5} {s.censored:>6}")
    return "\n".join(rows)

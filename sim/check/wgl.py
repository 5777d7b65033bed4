"""The Wing & Gong linearizability search with Lowe's cache, iterative.

Wing & Gong ("Testing and verifying concurrent objects", JPDC 1993) search
for a linearization by repeatedly picking a *minimal* operation (one called
before every pending return) that the sequential model accepts, and
backtracking when the earliest pending return is reached with its operation
still unplaced. Lowe ("Testing for linearizability", Concurrency and
Computation 29(4), 2017) adds the cache that makes it practical: a
configuration is the set of operations linearized so far plus the model state,
and one reached before (and therefore already known to fail) is not explored
again. Porcupine's ``checkSingle`` is this algorithm; so is this module.

Shape of the implementation, as in Lowe's paper and Porcupine:

* events (calls and returns, calls first at equal times since intervals are
  closed) sit in a doubly linked list over arrays; linearizing an operation
  *lifts* its call and return out of the list, backtracking puts them back in
  reverse order (dancing links), so each step is O(1);
* the recursion of the original is an explicit stack of (operation, state
  before it), so no history is too long for Python's recursion limit;
* the linearized set is an int bitmask, the cache a set of (bitmask, state).

Beyond Porcupine:

* ``info`` operations have no return event (their return is infinitely late)
  and the search succeeds once every ``ok`` operation is linearized: an
  unplaced info operation simply never happened (or happened after
  everything, which is the same for a store nobody reads afterwards);
* values nobody observes collapse into one state (``model.UNOBSERVED``), so
  configurations that differ only in which unread write came last share one
  cache entry;
* reads go first: if a minimal read-only operation (a get, a refused cas, a
  txn of gets) is legal in the current state, some linearization extending
  the current prefix places it next, if any does. It changes nothing, and no
  pending operation must precede it (it is minimal). So it is placed without
  making a choice point, and backtracking past it goes straight to the
  previous choice. This prunes the interleavings of reads with each other and
  with writes that Lowe's cache alone would explore;
* the cache is capped (``cache_cap`` configurations). Past the cap new
  configurations are no longer remembered; the search stays correct, only
  slower, and the time limit turns it into ``unknown``. Memory stays bounded.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sim.check.model import ILLEGAL, State, compile_step, initial_state, is_read_only, observed_values
from sim.check.result import Verdict
from sim.history import Operation, Status

# ~ 200-400 bytes a configuration for a few hundred concurrent ops: ~1 GiB at most.
DEFAULT_CACHE_CAP = 3_000_000

# How many search steps between two looks at the clock.
_CLOCK_EVERY = 2048


@dataclass(frozen=True, slots=True)
class SearchOutcome:
    """``order``: a linearization (positions into the input) when OK.

    ``longest``: the longest partial linearization met, when asked for.
    ``cache_full``: the cache hit its cap and stopped growing.
    """

    verdict: Verdict
    explored: int
    order: tuple[int, ...] = ()
    longest: tuple[int, ...] = ()
    cache_full: bool = False
    cache_size: int = 0


def search(
    ops: Sequence[Operation],
    slots: Mapping[str, int] | None,
    *,
    deadline: float | None = None,
    cache_cap: int = DEFAULT_CACHE_CAP,
    track_longest: bool = False,
) -> SearchOutcome:
    """Decide whether ``ops`` (one component, no fail ops) is linearizable.

    ``deadline`` is a ``time.monotonic()`` instant; past it the answer is
    UNKNOWN. ``slots`` None means the component has one key (scalar state).
    """
    n = len(ops)
    observed = observed_values(ops)
    steps = [compile_step(op, slots, observed) for op in ops]
    is_ok = [op.status is Status.OK for op in ops]
    reader = [is_read_only(op) for op in ops]
    remaining = sum(is_ok)

    # Event list: node 0 is the head sentinel, -1 ends the list.
    events: list[tuple[float, int, int]] = []
    for i, op in enumerate(ops):
        events.append((op.call, 0, i))
        if op.return_ is not None:
            events.append((op.return_, 1, i))
    events.sort()
    m = len(events)
    node_op = [0] * (m + 1)
    node_call = [False] * (m + 1)
    call_node = [0] * n
    return_node = [-1] * n
    for j, (_, is_return, i) in enumerate(events, start=1):
        node_op[j] = i
        node_call[j] = not is_return
        if is_return:
            return_node[i] = j
        else:
            call_node[i] = j
    nxt = [j + 1 for j in range(m + 1)]
    nxt[m] = -1
    prv = [j - 1 for j in range(m + 1)]

    def lift(x: int) -> None:
        p, q = prv[x], nxt[x]
        nxt[p] = q
        if q != -1:
            prv[q] = p

    def unlift(x: int) -> None:
        p, q = prv[x], nxt[x]
        nxt[p] = x
        if q != -1:
            prv[q] = x

    state: State = initial_state(slots)
    linearized = 0
    # (operation, state before it, placed without a choice)
    stack: list[tuple[int, State, bool]] = []
    cache: set[tuple[int, State]] = set()
    cache_full = False
    explored = 0
    longest: tuple[int, ...] = ()
    budget = _CLOCK_EVERY
    node = nxt[0]
    look_for_reads = True
    while remaining:
        budget -= 1
        if budget == 0:
            budget = _CLOCK_EVERY
            if deadline is not None and time.monotonic() > deadline:
                return SearchOutcome(Verdict.UNKNOWN, explored, (), longest, cache_full, len(cache))
        forced = False
        if look_for_reads:
            look_for_reads = False
            x = nxt[0]
            while x != -1 and node_call[x]:
                j = node_op[x]
                if reader[j] and steps[j](state) is not ILLEGAL:
                    node, forced = x, True
                    break
                x = nxt[x]
        i = node_op[node]
        if node_call[node]:
            after = steps[i](state)
            if after is not ILLEGAL:
                bits = linearized | (1 << i)
                config = (bits, after)
                if config not in cache:
                    if len(cache) < cache_cap:
                        cache.add(config)
                    else:
                        cache_full = True
                    explored += 1
                    stack.append((i, state, forced))
                    state = after  # type: ignore[assignment]
                    linearized = bits
                    if is_ok[i]:
                        remaining -= 1
                    lift(call_node[i])
                    if return_node[i] != -1:
                        lift(return_node[i])
                    if track_longest and len(stack) > len(longest):
                        longest = tuple(j for j, _, _ in stack)
                    node = nxt[0]
                    look_for_reads = True
                    continue
                if forced:
                    # Placing the read next is without loss of generality and
                    # that configuration already failed: so does this one.
                    node = -1
            if node != -1:
                node = nxt[node]
        if node == -1 or not node_call[node]:
            # The earliest pending return, and its operation is not placed:
            # undo the last real choice and try the next candidate after it.
            while True:
                if not stack:
                    return SearchOutcome(Verdict.VIOLATION, explored, (), longest, cache_full, len(cache))
                i, state, was_forced = stack.pop()
                linearized ^= 1 << i
                if is_ok[i]:
                    remaining += 1
                if return_node[i] != -1:
                    unlift(return_node[i])
                unlift(call_node[i])
                if not was_forced:
                    break
            node = nxt[call_node[i]]
    order = tuple(j for j, _, _ in stack)
    return SearchOutcome(Verdict.OK, explored, order, order if track_longest else (), cache_full, len(cache))

"""Each member's own clock: true (simulation) time seen through an offset and a drift.

A member never sees ``env.now``. Its clock reads
``local = anchor_local + (true - anchor_true) * rate``: ``rate`` is 1 plus the
drift (a quartz clock is off by tens of parts per million; the ``clock`` fault
makes it much worse), and a *bump* jumps the reading forward. Every change
re-anchors the line, so local time stays continuous apart from the bumps.

The driver feeds ``local_now`` to the member and turns the member's deadline
(a local time) back into the true time to sleep until. The Raft core ignores a
clock that goes back (``tick`` keeps the largest time seen), so a backward
step freezes the member's timers until its clock catches up — like a VM
whose clock was stepped back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(slots=True)
class Clock:
    anchor_true: float = 0.0
    anchor_local: float = 0.0
    rate: float = 1.0
    nominal_rate: float = 1.0

    @staticmethod
    def start(true_now: float, offset: float, drift: float) -> Clock:
        rate = 1.0 + drift
        if rate <= 0:
            raise ValueError(f"drift must be greater than -1, not {drift}")
        return Clock(anchor_true=true_now, anchor_local=true_now + offset, rate=rate, nominal_rate=rate)

    def local(self, true_now: float) -> float:
        return self.anchor_local + (true_now - self.anchor_true) * self.rate

    def true_time(self, local: float) -> float:
        """The earliest true time at which this clock reads at least `local` (at the current rate).

        Rounded up to the float where ``self.local`` reaches `local`: a member woken by its
        deadline timer must see its deadline as due, or it would sleep 0 s forever.
        """
        t = self.anchor_true + (local - self.anchor_local) / self.rate
        while self.local(t) < local:
            t = math.nextafter(t, math.inf)
        return t

    def offset(self, true_now: float) -> float:
        return self.local(true_now) - true_now

    def _reanchor(self, true_now: float) -> None:
        self.anchor_local = self.local(true_now)
        self.anchor_true = true_now

    def bump(self, true_now: float, delta: float) -> None:
        """Step the clock by `delta` seconds (NTP stepping it, an operator setting the date)."""
        self._reanchor(true_now)
        self.anchor_local += delta

    def set_rate(self, true_now: float, rate: float) -> None:
        """Run at `rate` local seconds per true second from now on."""
        if rate <= 0:
            raise ValueError(f"clock rate must be greater than 0, not {rate}")
        self._reanchor(true_now)
        self.rate = rate

    def reset_rate(self, true_now: float) -> None:
        self.set_rate(true_now, self.nominal_rate)

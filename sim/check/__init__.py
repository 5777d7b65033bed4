"""Checkers for histories of raftkv (or any etcd-like store).

* :func:`check`: linearizability of a kv history (``sim.history`` format);
* :func:`check_watch`, :func:`check_lock`, :func:`check_lease`: the watch,
  lock and lease properties etcd's robustness tests and Jepsen check.

Each returns a :class:`CheckResult`. ``python -m sim check --help`` is the
command line.
"""

from sim.check.lease import check_lease
from sim.check.linearizability import DEFAULT_TIMEOUT, check
from sim.check.lock import check_lock
from sim.check.model import ModelKind
from sim.check.result import CheckKind, CheckResult, Counterexample, Verdict, Violation, render_text
from sim.check.watch import check_watch
from sim.check.wgl import DEFAULT_CACHE_CAP

__all__ = [
    "DEFAULT_CACHE_CAP",
    "DEFAULT_TIMEOUT",
    "CheckKind",
    "CheckResult",
    "Counterexample",
    "ModelKind",
    "Verdict",
    "Violation",
    "check",
    "check_lease",
    "check_lock",
    "check_watch",
    "render_text",
]

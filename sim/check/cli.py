"""``python -m sim check`` and ``python -m sim check-bench``.

Exit status, for every ``--kind``: 0 the history is fine (linearizable /
valid), 1 it is not, 2 unknown (the time limit ran out), 3 bad input (a
malformed file names its line; an unreadable file or a bad option too).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from sim.check.linearizability import DEFAULT_TIMEOUT
from sim.check.result import CheckKind, CheckResult, render_text
from sim.check.wgl import DEFAULT_CACHE_CAP
from sim.history import HistoryError

BAD_INPUT = 3

_DESCRIPTION = """\
Check a history file (JSON Lines, format in sim/history.py), or a Jepsen
register history (history.edn: :read, :write and :cas ops, keyed with
jepsen.independent or one register; reading rules in sim/check/jepsen.py).

--kind linearizability (default): is there a total order of the get, put,
delete, cas and txn operations that respects real time and the semantics of a
key-value store? On a violation, prints the smallest failing fragment and the
longest prefix of it that can be linearized.
--kind watch / lock / lease: the watch delivery, lock exclusion (fencing by
create revision) and lease expiry properties; formats in sim/check/watch.py,
lock.py and lease.py.

Exit status: 0 linearizable (valid), 1 not linearizable (invalid), 2 unknown
(time limit reached), 3 bad input.
"""


def add_check(subparsers: Any) -> None:
    """Register ``check`` on the ``python -m sim`` parser."""
    p = subparsers.add_parser(
        "check",
        help="check a history: linearizability, watch, lock or lease properties",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("history", metavar="HISTORY", help="the history file to check (.jsonl, or Jepsen's .edn)")
    p.add_argument(
        "--format",
        choices=["auto", "jsonl", "jepsen"],
        default="auto",
        help="how to read HISTORY: jsonl (sim/history.py), jepsen (a Jepsen register history.edn), or "
        "auto: jepsen for a .edn file, else jsonl (default); jepsen implies --kind linearizability",
    )
    p.add_argument(
        "--write-edn",
        metavar="OUT.edn",
        help="also write the history as Jepsen ops (get/put/cas only), to check the same run with Knossos",
    )
    p.add_argument(
        "--kind",
        choices=[k.value for k in CheckKind],
        default=CheckKind.LINEARIZABILITY.value,
        help="which property to check (default: linearizability)",
    )
    p.add_argument(
        "--model",
        choices=["kv", "register"],
        default="kv",
        help="kv: every key is independent, txns tie keys together (default); "
        "register: the whole history is one register (keys ignored, delete writes 'absent', no txn)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="S",
        help=f"give up after S seconds with verdict 'unknown' (default {DEFAULT_TIMEOUT:g})",
    )
    p.add_argument(
        "--cache-cap",
        type=int,
        default=DEFAULT_CACHE_CAP,
        metavar="N",
        help=f"remember at most N search configurations, bounding memory (default {DEFAULT_CACHE_CAP})",
    )
    p.add_argument("--plot", metavar="OUT.png", help="draw the timeline (counterexample highlighted) as a PNG")
    p.add_argument("--html", metavar="OUT.html", help="write a self-contained HTML timeline; hover an op for details")
    p.add_argument("--json", action="store_true", help="print one JSON object on one line instead of text")
    p.add_argument(
        "--no-minimize", action="store_true", help="report the failing component without shrinking it"
    )
    p.set_defaults(run=run_check)


def run_check(args: argparse.Namespace) -> int:
    kind = CheckKind(args.kind)
    if kind is not CheckKind.LINEARIZABILITY and (args.format == "jepsen" or args.write_edn):
        print("error: --format jepsen and --write-edn are for kv histories; use --kind linearizability",
              file=sys.stderr)
        return BAD_INPUT
    if kind is not CheckKind.LINEARIZABILITY and (args.plot or args.html):
        print("error: --plot and --html draw kv histories; use them with --kind linearizability", file=sys.stderr)
        return BAD_INPUT
    if args.timeout is not None and args.timeout <= 0:
        print("error: --timeout must be positive", file=sys.stderr)
        return BAD_INPUT
    try:
        result, ops = _run(kind, args)
    except HistoryError as e:
        print(f"error: {args.history}: {e}", file=sys.stderr)
        return BAD_INPUT
    except OSError as e:
        print(f"error: cannot read {args.history}: {e.strerror or e}", file=sys.stderr)
        return BAD_INPUT
    if args.json:
        print(result.to_json())
    else:
        print(render_text(result))
    if ops is not None:
        if args.plot:
            from sim.check.plot import plot_timeline

            plot_timeline(ops, result, args.plot)
        if args.html:
            from sim.check.page import write_page

            write_page(ops, result, args.html)
    return result.verdict.exit_status


def _run(kind: CheckKind, args: argparse.Namespace) -> tuple[CheckResult, list[Any] | None]:
    if kind is CheckKind.WATCH:
        from sim.check.watch import check_watch

        return check_watch(args.history), None
    if kind is CheckKind.LOCK:
        from sim.check.lock import check_lock

        return check_lock(args.history), None
    if kind is CheckKind.LEASE:
        from sim.check.lease import check_lease

        return check_lease(args.history), None
    from sim.check.linearizability import check
    from sim.check.model import ModelKind

    if args.format == "jepsen" or (args.format == "auto" and str(args.history).endswith(".edn")):
        from sim.check.jepsen import read_jepsen

        ops = read_jepsen(args.history)
    else:
        from sim.history import read_history

        ops = read_history(args.history)
    if args.write_edn:
        from sim.check.jepsen import write_jepsen

        text = write_jepsen(ops)  # before opening: a history it cannot express leaves no file
        with open(args.write_edn, "w", encoding="utf-8") as f:
            f.write(text)
    result = check(
        ops,
        model=ModelKind(args.model),
        timeout=args.timeout,
        cache_cap=args.cache_cap,
        minimize=not args.no_minimize,
    )
    return result, ops


def add_check_bench(subparsers: Any) -> None:
    """Register ``check-bench`` (the same as ``python -m sim.check.bench``)."""
    from sim.check import bench

    p = subparsers.add_parser(
        "check-bench",
        help="benchmark the linearizability checker on generated histories",
        description=bench.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_arguments(p)
    p.set_defaults(run=bench.run)

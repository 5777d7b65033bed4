"""Benchmark of the linearizability checker on generated histories.

Each case generates a history like a real cluster's (``sim.check.generate``:
concurrent clients, timeouts as info ops; "invalid" cases carry one stale
read), writes it as JSONL, reads it back and checks it, in a fresh child
process so that the peak memory reported (ru_maxrss) is that case's alone.
Seconds are the checker's (reading the file is reported separately).

    python -m sim.check.bench            # quick: 1k and 10k ops, 5 and 50 clients
    python -m sim.check.bench --full     # 1k/10k/100k ops x 5/20/50 clients
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import random
import resource
import sys
import time
from dataclasses import dataclass

QUICK_SIZES = (1_000, 10_000)
QUICK_CLIENTS = (5, 50)
FULL_SIZES = (1_000, 10_000, 100_000)
FULL_CLIENTS = (5, 20, 50)


@dataclass(frozen=True, slots=True)
class Case:
    ops: int
    clients: int
    keys: int
    invalid: bool
    workload: str
    seed: int


@dataclass(frozen=True, slots=True)
class Row:
    case: Case
    verdict: str
    seconds: float
    read_seconds: float
    explored: int
    peak_mib: float


def _run_case(case: Case, timeout: float) -> Row:
    from sim.check.generate import Shape, Workload, generate
    from sim.check.linearizability import check
    from sim.history import read_history, write_history

    rng = random.Random(case.seed)
    shape = Shape(case.ops, case.clients, case.keys, workload=Workload(case.workload), invalid=case.invalid)
    buffer = io.StringIO()
    write_history(generate(shape, rng), buffer)
    buffer.seek(0)
    t0 = time.perf_counter()
    ops = read_history(buffer)
    read_seconds = time.perf_counter() - t0
    result = check(ops, timeout=timeout)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return Row(case, result.verdict_text, result.seconds, read_seconds, result.explored, peak)


def _child(case: Case, timeout: float, queue: "multiprocessing.Queue[Row]") -> None:
    queue.put(_run_case(case, timeout))


def run_isolated(case: Case, timeout: float) -> Row:
    """Run one case in a fresh process (spawned, so memory starts clean)."""
    ctx = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue[Row] = ctx.Queue()
    proc = ctx.Process(target=_child, args=(case, timeout, queue))
    proc.start()
    row = queue.get()
    proc.join()
    return row


def cases(sizes: tuple[int, ...], clients: tuple[int, ...], workload: str, seed: int) -> list[Case]:
    out = []
    for n in sizes:
        for c in clients:
            for keys in (1, max(1, n // 100)):  # one hot key, or ~100 ops per key
                for invalid in (False, True):
                    out.append(Case(n, c, keys, invalid, workload, seed))
    return out


def format_row(row: Row) -> str:
    c = row.case
    return (
        f"| {c.ops:>7} | {c.clients:>7} | {c.keys:>5} | {'invalid' if c.invalid else 'valid':>9} "
        f"| {row.verdict:>16} | {row.seconds:>8.3f} | {row.read_seconds:>7.3f} | {row.explored:>9} "
        f"| {row.peak_mib:>8.0f} |"
    )


HEADER = (
    "|     ops | clients |  keys | generated |          verdict |  check s |  read s |  explored | peak MiB |\n"
    "|--------:|--------:|------:|----------:|-----------------:|---------:|--------:|----------:|---------:|"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--full", action="store_true", help="sizes 1k/10k/100k and 5/20/50 clients")
    p.add_argument("--sizes", type=int, nargs="+", metavar="N", help="history sizes in operations")
    p.add_argument("--clients", type=int, nargs="+", metavar="C", help="concurrent clients")
    p.add_argument(
        "--workload",
        choices=["register", "mixed"],
        default="register",
        help="register: get/put with unique values (default); mixed: also cas and delete",
    )
    p.add_argument("--timeout", type=float, default=60.0, metavar="S", help="per-case time limit (default 60)")
    p.add_argument("--seed", type=int, default=1, help="seed of the history generator (default 1)")
    p.add_argument("--in-process", action="store_true", help="no child processes (peak memory is cumulative)")


def run(args: argparse.Namespace) -> int:
    sizes = tuple(args.sizes) if args.sizes else (FULL_SIZES if args.full else QUICK_SIZES)
    clients = tuple(args.clients) if args.clients else (FULL_CLIENTS if args.full else QUICK_CLIENTS)
    print(f"# seed {args.seed}, workload {args.workload}, timeout {args.timeout:g} s, python {sys.version.split()[0]}")
    print(HEADER, flush=True)
    wrong = 0
    for case in cases(sizes, clients, args.workload, args.seed):
        row = _run_case(case, args.timeout) if args.in_process else run_isolated(case, args.timeout)
        print(format_row(row), flush=True)
        expected = "not linearizable" if case.invalid else "linearizable"
        wrong += row.verdict not in (expected, "unknown")
    if wrong:
        print(f"{wrong} cases got a wrong verdict", file=sys.stderr)
    return 1 if wrong else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sim.check.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

"""``raftkv bench``: requests/s and latency of raftkv, or of any etcd endpoint, with one client.

Why its own tool and not etcd's ``benchmark``: the issue asks for raftkv and
etcd 3.4 measured side by side *with the same client* on the same machine,
and Debian ships no etcd benchmark binary. The client here is grpcio with
real_net's stubs, so whatever it costs, it costs both servers the same.

What it runs, each for ``--seconds`` (a closed loop: ``--clients`` concurrent
clients, each sending its next request when the last is answered), spread
over ``--procs`` client processes with ``--conns`` gRPC channels each:

* ``put``: puts of ``--small-size``-byte values on keys drawn from
  ``--key-space`` keys, to the leader;
* ``put-1k``: the same with ``--value-size`` bytes (default 1 KiB);
* ``get``: linearizable gets (ReadIndex on raftkv), over all members;
* ``get-serializable``: serializable gets (local reads), over all members.

Without ``--target`` it starts a local cluster of ``--nodes`` members in a
temporary directory (``--data-dir`` to keep it), with TLS for clients when
``--tls`` is given (peers always use mutual TLS, and every WAL batch is
fsynced); with ``--etcd`` it also starts a local etcd 3.4 cluster the same
way and prints both side by side. With ``--target URL[,URL...]`` it
measures whatever answers there (use ``--cacert/--cert/--key`` for TLS).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import multiprocessing as mp
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from real_net import certs, launcher
from real_net.client import ClientTLS, Stubs, aio_channel, status
from real_net.proto import rpc_pb2 as pb

WORKLOADS = ("put", "put-1k", "get", "get-serializable")
_BAR_WIDTH = 24


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nodes", type=int, default=3, help="members of the local cluster(s) (default: 3)")
    p.add_argument("--clients", type=int, default=64, help="concurrent clients, in total (default: 64)")
    p.add_argument("--seconds", type=float, default=20.0, help="seconds per workload (default: 20)")
    p.add_argument("--tls", action="store_true", help="clients use TLS to the local cluster(s) (default: plain)")
    p.add_argument("--target", default="",
                   help="benchmark these endpoints (comma-separated URLs) instead of a local cluster")
    p.add_argument("--cacert", type=Path, help="with --target over https: the CA of the server certificates")
    p.add_argument("--cert", type=Path, help="with --target: client certificate, if the server wants one")
    p.add_argument("--key", type=Path, help="with --target: client private key")
    p.add_argument("--etcd", action="store_true",
                   help="also start a local etcd 3.4 cluster (etcd-server package) and benchmark it the same way")
    p.add_argument("--workloads", default=",".join(WORKLOADS),
                   help=f"comma-separated subset of {','.join(WORKLOADS)} (default: all)")
    p.add_argument("--value-size", type=int, default=1024, help="bytes per value in put-1k (default: 1024)")
    p.add_argument("--small-size", type=int, default=8, help="bytes per value in put (default: 8)")
    p.add_argument("--key-space", type=int, default=10_000, help="distinct keys written and read (default: 10000)")
    p.add_argument("--procs", type=int, default=0,
                   help="client processes (default: as many as CPUs, at most 4): one Python process "
                   "cannot drive a fast server alone")
    p.add_argument("--conns", type=int, default=2, help="gRPC channels per client process (default: 2)")
    p.add_argument("--data-dir", type=Path, help="keep the local clusters' data here (default: a temp dir)")
    p.add_argument("--unsafe-no-fsync", action="store_true",
                   help="local raftkv and etcd skip fsync (what the disk costs, measured by difference)")
    p.add_argument("--client-api", choices=("all", "grpc"), default="all",
                   help="the local raftkv members' --client-api (default: all, as etcd's one client port)")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="also write DIR/bench.json (every figure and the settings) and DIR/bench.png "
                   "(requests/s and p50/p99 latency, system beside system)")


# ----------------------------------------------------------------- results


@dataclass(slots=True)
class Result:
    system: str
    workload: str
    seconds: float
    latencies: list[float] = field(default_factory=list)  # seconds, one per successful request
    errors: int = 0

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def results_json(results: Sequence[Result], settings: dict[str, Any]) -> dict[str, Any]:
    """Every figure of the run, and what it ran with (for scripts and for comparing runs)."""

    def ms(r: Result, q: float) -> float | None:
        return round(r.percentile(q) * 1e3, 3) if r.latencies else None

    rows = [
        {"system": r.system, "workload": r.workload, "seconds": r.seconds, "requests": len(r.latencies),
         "requests_per_second": round(r.rate, 1), "p50_ms": ms(r, 0.5), "p90_ms": ms(r, 0.9),
         "p99_ms": ms(r, 0.99), "max_ms": round(max(r.latencies) * 1e3, 3) if r.latencies else None,
         "errors": r.errors}  # fmt: skip
        for r in results
    ]
    return {"settings": settings, "results": rows}


def render_table(results: Sequence[Result]) -> str:
    head = f"{'system':8} {'workload':17} {'req/s':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'errors':>7}"
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(
            f"{r.system:8} {r.workload:17} {r.rate:9.0f} {r.percentile(0.5) * 1e3:8.2f} "
            f"{r.percentile(0.9) * 1e3:8.2f} {r.percentile(0.99) * 1e3:8.2f} {r.errors:7d}"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------- the client


@dataclass(frozen=True, slots=True)
class Job:
    workload: str
    write_urls: tuple[str, ...]
    read_urls: tuple[str, ...]
    tls: ClientTLS | None
    clients: int
    conns: int
    seconds: float
    value_size: int
    key_space: int
    seed: int


async def _drive(job: Job, progress: Any) -> tuple[list[float], int]:
    urls = job.write_urls if job.workload.startswith("put") else job.read_urls
    # Clients share a few channels (HTTP/2 multiplexes them), spread over the endpoints.
    channels = [aio_channel(urls[i % len(urls)], job.tls) for i in range(job.conns)]
    latencies: list[float] = []
    errors = 0
    rng = random.Random(job.seed)
    value = os.urandom(job.value_size)
    serializable = job.workload == "get-serializable"
    deadline = time.monotonic() + job.seconds

    async def one(i: int) -> None:
        nonlocal errors
        kv = Stubs(channels[i % len(channels)]).kv
        r = random.Random(rng.random())
        clock = time.perf_counter
        while time.monotonic() < deadline:
            key = b"bench/%d" % r.randrange(job.key_space)
            t = clock()
            try:
                if job.workload.startswith("put"):
                    await kv.Put(pb.PutRequest(key=key, value=value), timeout=10)
                else:
                    await kv.Range(pb.RangeRequest(key=key, serializable=serializable), timeout=10)
            except grpc.RpcError:
                errors += 1
                await asyncio.sleep(0.01)
                continue
            latencies.append(clock() - t)
            if len(latencies) % 256 == 0:
                with progress.get_lock():
                    progress.value += 256

    try:
        for ch in channels:
            await ch.channel_ready()
        await asyncio.gather(*(one(i) for i in range(job.clients)))
    finally:
        for ch in channels:
            await ch.close()
    return latencies, errors


def _worker(job: Job, progress: Any, out: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    try:
        out.put(asyncio.run(_drive(job, progress)))
    except BaseException as e:  # reported to the parent, which says what failed
        out.put(e)


def run_workload(system: str, job: Job, procs: int, show: bool) -> Result:
    ctx: Any = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    progress = ctx.Value("q", 0)
    out = ctx.Queue()
    per_proc = [job.clients // procs + (1 if i < job.clients % procs else 0) for i in range(procs)]
    workers = [
        ctx.Process(
            target=_worker,
            args=(dataclasses.replace(job, clients=n, seed=job.seed + i), progress, out),
            daemon=True,
        )
        for i, n in enumerate(per_proc)
        if n > 0
    ]
    started = time.monotonic()
    for w in workers:
        w.start()
    results: list[Any] = []
    last = 0
    while len(results) < len(workers):
        try:
            results.append(out.get(timeout=1.0))
        except Exception:  # queue.Empty: time for a progress line
            pass
        if show:
            elapsed = time.monotonic() - started
            done = progress.value
            frac = min(1.0, elapsed / job.seconds)
            bar = "#" * int(frac * _BAR_WIDTH)
            print(
                f"\r{system:7} {job.workload:17} [{bar:{_BAR_WIDTH}}] {elapsed:5.1f}s "
                f"{done:9d} req {(done - last):7d} req/s ",
                end="",
                file=sys.stderr,
                flush=True,
            )
            last = done
    for w in workers:
        w.join(5)
    if show:
        print(file=sys.stderr)
    for r in results:
        if isinstance(r, BaseException):
            raise RuntimeError(f"a client process failed: {r!r}")
    latencies = [x for lat, _ in results for x in lat]
    return Result(system, job.workload, job.seconds, latencies, sum(e for _, e in results))


async def _prefill(urls: Sequence[str], tls: ClientTLS | None, key_space: int, size: int) -> None:
    """Write every key once, so gets find values (and both systems hold the same data)."""
    ch = aio_channel(urls[0], tls)
    try:
        kv = Stubs(ch).kv
        value = os.urandom(size)
        sem = asyncio.Semaphore(64)

        async def put(i: int) -> None:
            async with sem:
                await kv.Put(pb.PutRequest(key=b"bench/%d" % i, value=value), timeout=30)

        await asyncio.gather(*(put(i) for i in range(key_space)))
    finally:
        await ch.close()


# ------------------------------------------------------------ local clusters


@dataclass(slots=True)
class LocalCluster:
    system: str
    urls: list[str]
    tls: ClientTLS | None
    procs: list[subprocess.Popen[bytes]]

    def leader_url(self) -> str:
        for url in self.urls:
            st = status(url, self.tls)
            if st.leader == st.header.member_id:
                return url
        return self.urls[0]

    def stop(self) -> None:
        launcher.stop_all(self.procs)


def start_raftkv(directory: Path, nodes: int, tls: bool, no_fsync: bool, client_api: str = "all") -> LocalCluster:
    extra = (["--unsafe-no-fsync"] if no_fsync else []) + ["--client-api", client_api]
    specs, paths = launcher.plan(directory, nodes, plain=not tls, extra=extra)
    procs = [launcher.spawn(s) for s in specs]
    client_tls = launcher.client_tls(paths) if tls else None
    cluster = LocalCluster("raftkv", [s.client_url for s in specs], client_tls, procs)
    try:
        launcher.wait_ready(specs, client_tls, procs)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def start_etcd(directory: Path, nodes: int, tls: bool, no_fsync: bool) -> LocalCluster:
    binary = shutil.which("etcd")
    if binary is None:
        raise RuntimeError("`etcd` is not on PATH: apt-get install -y etcd-server")
    names = [f"n{i}" for i in range(1, nodes + 1)]
    paths = certs.ensure_certs(directory / "certs", names)
    scheme = "https" if tls else "http"
    urls = {n: (f"{scheme}://127.0.0.1:{launcher.free_port()}", f"https://127.0.0.1:{launcher.free_port()}")
            for n in names}  # fmt: skip
    initial = ",".join(f"{n}={urls[n][1]}" for n in names)
    procs = []
    specs = []
    for n in names:
        client, peer = urls[n]
        pair = paths.member(n)
        argv = [
            binary, "--name", n, "--data-dir", str(directory / n),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", initial, "--initial-cluster-state", "new", "--initial-cluster-token", "bench",
            "--peer-cert-file", str(pair.cert), "--peer-key-file", str(pair.key),
            "--peer-trusted-ca-file", str(paths.ca), "--peer-client-cert-auth",
            "--log-level", "warn",
        ]  # fmt: skip
        if tls:
            argv += ["--cert-file", str(pair.cert), "--key-file", str(pair.key), "--trusted-ca-file", str(paths.ca)]
        if no_fsync:
            argv.append("--unsafe-no-fsync")
        spec = launcher.MemberSpec(n, client, peer, directory / n, directory / f"{n}.log", argv)
        specs.append(spec)
        procs.append(launcher.spawn(spec))
    client_tls = launcher.client_tls(paths) if tls else None
    cluster = LocalCluster("etcd", [s.client_url for s in specs], client_tls, procs)
    try:
        launcher.wait_ready(specs, client_tls, procs)
    except BaseException:
        cluster.stop()
        raise
    return cluster


# --------------------------------------------------------------------- main


@dataclass(slots=True)
class Target:
    """One system under test: where writes go (the leader) and where reads go (all)."""

    name: str
    write_urls: list[str]
    read_urls: list[str]
    tls: ClientTLS | None


def bench_targets(targets: Sequence[Target], args: argparse.Namespace) -> list[Result]:
    """Every workload on every target, interleaved (workload by workload), so a change of
    load on the machine during the run hits all systems alike."""
    workloads = [w for w in args.workloads.split(",") if w]
    for w in workloads:
        if w not in WORKLOADS:
            raise ValueError(f"unknown workload {w!r} (choose from {', '.join(WORKLOADS)})")
    procs = args.procs or min(4, os.cpu_count() or 1)
    show = sys.stderr.isatty()
    for t in targets:
        print(f"{t.name}: prefilling {args.key_space} keys...", file=sys.stderr, flush=True)
        asyncio.run(_prefill(t.write_urls, t.tls, args.key_space, args.small_size))
    results = []
    for i, w in enumerate(workloads):
        size = args.value_size if w == "put-1k" else args.small_size
        for t in targets:
            job = Job(w, tuple(t.write_urls), tuple(t.read_urls), t.tls, args.clients, args.conns, args.seconds,
                      size, args.key_space, seed=1000 * i)  # fmt: skip
            r = run_workload(t.name, job, procs, show)
            print(f"{t.name:7} {w:17} {r.rate:9.0f} req/s  p50 {r.percentile(0.5) * 1e3:.2f} ms  "
                  f"p99 {r.percentile(0.99) * 1e3:.2f} ms  errors {r.errors}", file=sys.stderr, flush=True)  # fmt: skip
            results.append(r)
    order = {t.name: k for k, t in enumerate(targets)}
    return sorted(results, key=lambda r: order[r.system])


def run_bench(args: argparse.Namespace) -> int:
    results: list[Result] = []
    if args.target:
        urls = [u for u in args.target.split(",") if u]
        tls = ClientTLS(args.cacert, args.cert, args.key) if args.cacert else None
        leader = urls[0]
        for url in urls:
            try:
                st = status(url, tls)
            except grpc.RpcError:
                continue
            if st.leader == st.header.member_id:
                leader = url
        results = bench_targets([Target("target", [leader], urls, tls)], args)
    else:
        tmp = None
        root = args.data_dir
        if root is None:
            tmp = tempfile.mkdtemp(prefix="raftkv-bench-")
            root = Path(tmp)
        clusters: list[LocalCluster] = []
        try:
            print(f"starting a local raftkv cluster of {args.nodes} in {root / 'raftkv'}...", file=sys.stderr)
            clusters.append(start_raftkv(root / "raftkv", args.nodes, args.tls, args.unsafe_no_fsync, args.client_api))
            if args.etcd:
                print(f"starting a local etcd cluster of {args.nodes} in {root / 'etcd'}...", file=sys.stderr)
                clusters.append(start_etcd(root / "etcd", args.nodes, args.tls, args.unsafe_no_fsync))
            targets = [Target(c.system, [c.leader_url()], c.urls, c.tls) for c in clusters]
            results = bench_targets(targets, args)
        finally:
            for c in clusters:
                c.stop()
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
    print()
    fsync = "no fsync" if args.unsafe_no_fsync else "fsync per batch"
    tls = "TLS" if args.tls or args.target else "plain"
    summary = f"{args.clients} clients, {args.seconds:g} s per workload, {tls}, {fsync}, {os.cpu_count()} CPUs"
    print(summary)
    print(render_table(results))
    if args.out is not None:
        from real_net.bench_plot import plot_results

        args.out.mkdir(parents=True, exist_ok=True)
        settings = {"nodes": args.nodes, "clients": args.clients, "seconds": args.seconds, "tls": tls == "TLS",
                    "fsync": not args.unsafe_no_fsync, "target": args.target or None, "cpus": os.cpu_count(),
                    "workloads": args.workloads.split(",")}  # fmt: skip
        (args.out / "bench.json").write_text(json.dumps(results_json(results, settings), indent=1) + "\n")
        plot_results(results, f"raftkv bench: {summary}", args.out / "bench.png")
        print(f"wrote {args.out / 'bench.json'} and {args.out / 'bench.png'}")
    return 0

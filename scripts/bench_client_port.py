"""Puts per second through etcd's gRPC stubs, straight to grpc.aio and through the client port.

Why: real_net/client_port.py puts an asyncio front before the gRPC server (one
port for gRPC and HTTP/1.1, as etcd's). This measures what the front costs a
gRPC client: the same LocalBackend is served once by ``grpc_server.start_server``
(direct) and once by ``client_port.serve_client_port`` (front), with and without
TLS, and a client in another process runs the same puts against each, in
alternating rounds. The server runs on one event loop in this process; the
client is a separate process (grpc.aio, CONCURRENCY calls in flight on one
channel), so on a 2-core machine each gets a core.

    python scripts/bench_client_port.py [--puts 5000] [--concurrency 32] [--rounds 3] [--tls]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

PUTS = 5000
CONCURRENCY = 32
ROUNDS = 3
VALUE = b"v" * 100


def client_main(target: str, puts: int, concurrency: int, ca: str | None) -> None:
    import grpc
    from grpc import aio

    from real_net.proto import rpc_pb2 as pb
    from real_net.proto import rpc_pb2_grpc as pb_grpc

    async def run() -> dict[str, Any]:
        if ca is None:
            channel = aio.insecure_channel(target)
        else:
            creds = grpc.ssl_channel_credentials(Path(ca).read_bytes())
            channel = aio.secure_channel(target, creds)
        stub = pb_grpc.KVStub(channel)
        await stub.Put(pb.PutRequest(key=b"warmup", value=VALUE))
        next_i = 0
        latencies: list[float] = []

        async def worker() -> None:
            nonlocal next_i
            while next_i < puts:
                i = next_i
                next_i += 1
                t = time.perf_counter()
                await stub.Put(pb.PutRequest(key=b"k%06d" % (i % 1000), value=VALUE))
                latencies.append(time.perf_counter() - t)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
        await channel.close()
        latencies.sort()
        return {
            "puts_per_s": puts / elapsed,
            "p50_ms": latencies[len(latencies) // 2] * 1000,
            "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        }

    print(json.dumps(asyncio.run(run())))


class Server:
    """LocalBackend + one server kind on an event loop in a background thread."""

    def __init__(self, kind: str, tls: Any) -> None:
        self.kind, self.tls = kind, tls
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def __enter__(self) -> Server:
        from real_net.client_port import serve_client_port
        from real_net.grpc_server import start_server
        from real_net.local_backend import LocalBackend

        self.thread.start()

        async def start() -> None:
            self.backend = LocalBackend()
            await self.backend.start()
            if self.kind == "direct":
                self.server = await start_server(self.backend, "127.0.0.1", 0, tls=self.tls)
            else:
                self.server = await serve_client_port(self.backend, "127.0.0.1", 0, tls=self.tls)

        self.run(start())
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            await self.server.stop(0.5)
            await self.backend.stop()

        self.run(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--puts", type=int, default=PUTS)
    p.add_argument("--concurrency", type=int, default=CONCURRENCY)
    p.add_argument("--rounds", type=int, default=ROUNDS)
    p.add_argument("--tls", action="store_true", help="serve and connect over TLS")
    p.add_argument("--no-pin", action="store_true", help="do not pin the server to core 0 and the client to core 1")
    p.add_argument("--client", nargs=2, metavar=("TARGET", "CA"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.client:
        target, ca = args.client
        client_main(target, args.puts, args.concurrency, None if ca == "-" else ca)
        return

    from real_net import certs
    from real_net.grpc_server import ServerTLS

    tmp = tempfile.TemporaryDirectory(prefix="raftkv-bench-")
    tls, ca = None, "-"
    target_host = "127.0.0.1"
    if args.tls:
        paths = certs.ensure_certs(Path(tmp.name), ["m1"], hosts=["localhost", "127.0.0.1"])
        tls = ServerTLS(paths.member("m1").cert, paths.member("m1").key, paths.ca)
        ca = str(paths.ca)
        target_host = "localhost"
    results: dict[str, list[dict[str, Any]]] = {"direct": [], "front": []}
    # Server (this process, all its threads) on core 0, the client on core 1: less noise.
    pin_client: list[str] = []
    if not args.no_pin and (os.cpu_count() or 1) >= 2 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
        pin_client = ["taskset", "-c", "1"]
    for r in range(args.rounds):
        for kind in ("direct", "front"):
            with Server(kind, tls) as server:
                cpu0 = resource.getrusage(resource.RUSAGE_SELF)
                out = subprocess.run(
                    [*pin_client, sys.executable, __file__, "--puts", str(args.puts), "--concurrency", str(args.concurrency),
                     "--client", f"{target_host}:{server.server.port}", ca],
                    capture_output=True, text=True, timeout=300, check=True,
                )  # fmt: skip
                cpu1 = resource.getrusage(resource.RUSAGE_SELF)
                res = json.loads(out.stdout)
                cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
                res["server_cpu_us_per_put"] = cpu / (args.puts + 1) * 1e6
                results[kind].append(res)
                print(f"round {r + 1} {kind:6s} {res['puts_per_s']:8.0f} puts/s  "
                      f"p50 {res['p50_ms']:.2f} ms  p99 {res['p99_ms']:.2f} ms  "
                      f"server CPU {res['server_cpu_us_per_put']:.0f} us/put", flush=True)  # fmt: skip
    tmp.cleanup()
    med = {k: statistics.median(x["puts_per_s"] for x in v) for k, v in results.items()}
    cpu = {k: statistics.median(x["server_cpu_us_per_put"] for x in v) for k, v in results.items()}
    print(f"median ({'TLS' if args.tls else 'plain'}, {args.puts} puts, {args.concurrency} in flight): "
          f"direct {med['direct']:.0f} puts/s, {cpu['direct']:.0f} us CPU/put; "
          f"front {med['front']:.0f} puts/s ({(med['front'] / med['direct'] - 1) * 100:+.1f}%), "
          f"{cpu['front']:.0f} us CPU/put")  # fmt: skip


if __name__ == "__main__":
    main()

"""The ``raftkv`` command line (``python -m real_net``): cluster, serve, snapshot, certs, bench.

Why these subcommands: ``serve`` is one member as it runs on a real machine,
with etcd's flag names so an etcd operator reads it without a manual;
``cluster`` is the quick start (certificates, N ``serve`` processes on
127.0.0.1, an etcdctl line that works); ``certs`` makes only the
certificates; ``bench`` measures raftkv, or any etcd endpoint, with one client;
``snapshot status`` / ``snapshot restore`` are etcdctl's, for raftkv's data dir
(an etcd snapshot becomes a raftkv cluster).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from kv.errors import RaftKVError

_EPILOG_SERVE = """\
examples:
  python -m real_net certs /tmp/c --names n1,n2,n3
  python -m real_net serve --name n1 --data-dir /tmp/n1 \\
      --listen-client-urls https://127.0.0.1:2379 --listen-peer-urls https://127.0.0.1:2380 \\
      --initial-cluster n1=https://127.0.0.1:2380,n2=https://127.0.0.1:2480,n3=https://127.0.0.1:2580 \\
      --cert-file /tmp/c/n1.pem --key-file /tmp/c/n1-key.pem --trusted-ca-file /tmp/c/ca.pem

A member restarted with the same --data-dir rejoins with its state (its identity
and log are on disk; --initial-cluster is then only used to find peers). To add a
member: `etcdctl member add n4 --peer-urls=https://127.0.0.1:2680`, then start it
with --initial-cluster-state existing and an --initial-cluster naming it and the
running members.
"""


def _ms(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be a positive number of milliseconds")
    return value / 1000.0


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def _add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="run one member (flags named like etcd's)",
        description="Run one raftkv member: its Raft log on disk, mutual TLS to its peers, and "
        "etcd's v3 gRPC API for clients. Flags are named like etcd's; the shorter names "
        "from the raftkv docs (--listen-client, --cert, ...) are accepted too.",
        epilog=_EPILOG_SERVE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--name", required=True, help="this member's name; must appear in --initial-cluster")
    p.add_argument("--data-dir", required=True, type=Path,
                   help="where the member keeps its WAL, snapshots and identity (member/ inside it)")
    p.add_argument("--listen-client-urls", "--listen-client", dest="listen_client", required=True, metavar="URL",
                   help="client API URL: https://HOST:PORT serves TLS (needs --cert-file/--key-file), "
                   "http://HOST:PORT serves plain gRPC")
    p.add_argument("--advertise-client-urls", dest="advertise_client", default="", metavar="URL",
                   help="the client URL other members and `member list` show (default: --listen-client-urls)")
    p.add_argument("--listen-peer-urls", "--listen-peer", dest="listen_peer", required=True, metavar="URL",
                   help="peer URL: https:// means mutual TLS between members (http:// plain TCP, tests only)")
    p.add_argument("--initial-advertise-peer-urls", dest="advertise_peer", default="", metavar="URL",
                   help="this member's peer URL as the others dial it (default: --listen-peer-urls); "
                   "must equal its entry in --initial-cluster")
    p.add_argument("--initial-cluster", required=True, metavar="NAME=URL,...",
                   help="every member's name and peer URL, e.g. n1=https://10.0.0.1:2380,n2=...")
    p.add_argument("--initial-cluster-state", choices=("new", "existing"), default="new",
                   help="new: found a cluster with --initial-cluster; existing: join a running cluster "
                   "this member was added to with MemberAdd (default: new)")
    p.add_argument("--initial-cluster-token", default="etcd-cluster", metavar="TOKEN",
                   help="mixed into member and cluster IDs, as etcd's (default: etcd-cluster)")
    p.add_argument("--cert-file", "--cert", dest="cert", type=Path, help="client-port TLS certificate (PEM)")
    p.add_argument("--key-file", "--key", dest="key", type=Path, help="client-port TLS private key (PEM)")
    p.add_argument("--trusted-ca-file", "--trusted-ca", dest="trusted_ca", type=Path,
                   help="CA that signs client certificates (and, by default, peer certificates)")
    p.add_argument("--client-cert-auth", action="store_true",
                   help="refuse clients without a certificate signed by --trusted-ca-file")
    p.add_argument("--peer-cert-file", type=Path, help="peer TLS certificate (default: --cert-file)")
    p.add_argument("--peer-key-file", type=Path, help="peer TLS private key (default: --key-file)")
    p.add_argument("--peer-trusted-ca-file", type=Path,
                   help="CA every peer certificate must be signed by (default: --trusted-ca-file)")
    p.add_argument("--election-timeout", type=_ms, default=1.0, metavar="MS",
                   help="Raft election timeout in ms; timeouts are drawn from [MS, 2*MS) (default: 1000)")
    p.add_argument("--heartbeat-interval", type=_ms, default=0.1, metavar="MS",
                   help="leader heartbeat interval in ms (default: 100)")
    p.add_argument("--snapshot-count", type=_positive_int, default=100_000, metavar="N",
                   help="applied entries between snapshots of the state machine (default: 100000)")
    p.add_argument("--max-request-bytes", type=_positive_int, default=1536 * 1024, metavar="N",
                   help="largest client request accepted (default: 1572864, etcd's 1.5 MiB)")
    p.add_argument("--request-timeout", type=_ms, default=0.0, metavar="MS",
                   help="how long a request may wait for the cluster (default: 5000 + 2 x election timeout)")
    p.add_argument("--unsafe-no-fsync", action="store_true",
                   help="skip fsync (etcd's flag of the same name): a crash may lose acknowledged writes")
    p.add_argument("--client-api", choices=("all", "grpc"), default="all",
                   help="all: the client port serves v3 gRPC, the v3 JSON gateway and the v2 keys API, "
                   "as etcd's does; grpc: gRPC only, without the connection relay (less CPU per "
                   "request) (default: all)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"),
                   help="log verbosity on stderr (default: info)")


def _add_cluster(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "cluster",
        help="start a local cluster of N member processes",
        description="Start N raftkv members on 127.0.0.1 (free ports, mutual TLS between peers, TLS for "
        "clients), print their endpoints and an etcdctl command line, write DIR/etcdctl.env and "
        "DIR/cluster.json, and stop them all on Ctrl-C or SIGTERM. Certificates are made on the first "
        "run; later runs on the same DIR reuse the URLs, certificates and data. A member that dies "
        "is not restarted: cluster.json holds its exact command line (argv) for whoever restarts it.",
    )
    p.add_argument("--nodes", type=int, choices=range(1, 8), default=3, metavar="N",
                   help="members, 1 to 7; odd sizes are what a quorum system wants (default: 3)")
    p.add_argument("--data-dir", required=True, type=Path, help="certificates, member data dirs, logs")
    p.add_argument("--plain", action="store_true",
                   help="clients connect with http:// (no TLS; for clients without TLS support). "
                   "Peers keep mutual TLS.")
    p.add_argument("--client-cert-auth", action="store_true",
                   help="members refuse clients without the generated client certificate")
    p.add_argument("--election-timeout", type=int, default=None, metavar="MS", help="passed to every member")
    p.add_argument("--heartbeat-interval", type=int, default=None, metavar="MS", help="passed to every member")
    p.add_argument("--snapshot-count", type=int, default=None, metavar="N", help="passed to every member")
    p.add_argument("--unsafe-no-fsync", action="store_true", help="passed to every member (benchmarks only)")
    p.add_argument("--restore", type=Path, metavar="FILE",
                   help="start every member from this snapshot file (`etcdctl snapshot save` of an etcd or "
                   "raftkv cluster; see `snapshot restore`): its keys, revisions, compaction and leases, "
                   "with this cluster's members. DIR must not hold member data yet.")
    p.add_argument("--skip-hash-check", action="store_true",
                   help="with --restore: accept a file without the sha256 trailer (a db copied from a data dir)")


def _add_certs(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "certs",
        help="make a CA, member and client certificates",
        description="Make (first run only: existing files are kept) a CA, a certificate per member "
        "(server and client use, valid for --hosts and the member name) and a client certificate in DIR.",
    )
    p.add_argument("dir", type=Path, help="where to write the PEM files")
    p.add_argument("--names", default="n1,n2,n3", help="member names, comma-separated (default: n1,n2,n3)")
    p.add_argument("--hosts", default="127.0.0.1,localhost",
                   help="hosts every member certificate is valid for (default: 127.0.0.1,localhost)")


_EPILOG_SNAPSHOT = """\
examples:
  etcdctl --endpoints=ETCD snapshot save etcd.db
  python -m real_net snapshot status etcd.db -w table
  python -m real_net snapshot restore etcd.db --data-dir /tmp/n1 --name n1 \\
      --initial-cluster n1=https://127.0.0.1:2380,n2=https://127.0.0.1:2480,n3=https://127.0.0.1:2580 \\
      --initial-cluster-token tok --initial-advertise-peer-urls https://127.0.0.1:2380
  (the same for n2 and n3, then `serve` each with the same --initial-cluster and token)
  python -m real_net cluster --nodes 3 --data-dir /tmp/c --restore etcd.db   # all of it, locally
"""


def _add_snapshot(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "snapshot",
        help="status of a snapshot file, or restore one into a new raftkv data dir (etcdctl's commands)",
        description="etcdctl snapshot status / restore for raftkv. The file is what `etcdctl snapshot save` "
        "writes, from a real etcd 3.4 or from raftkv: etcd's bbolt backend and its sha256.",
        epilog=_EPILOG_SNAPSHOT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    snap = p.add_subparsers(dest="snapshot_command", required=True, metavar="{status,restore}")
    st = snap.add_parser(
        "status",
        help="hash, revision, total keys and total size of a snapshot file (as etcdctl prints them)",
        description="Gets backend snapshot status of a given file: bbolt's consistency check, then the "
        "CRC-32C hash over every bucket, key and value, the revision, the number of keys and the size, "
        "printed as `etcdctl snapshot status` prints them.",
    )
    st.add_argument("file", type=Path)
    st.add_argument("-w", "--write-out", choices=("simple", "table", "json"), default="simple",
                    help="output format (default: simple, as etcdctl)")
    rs = snap.add_parser(
        "restore",
        help="a new raftkv member data dir from a snapshot file, with a new membership",
        description="Restores an etcd member snapshot to a raftkv data directory, as `etcdctl snapshot "
        "restore` does for etcd: the sha256 is checked, every kept version of every key (revisions, "
        "versions, leases, tombstones), the compaction point and the leases are kept; the old members "
        "are dropped and the members of --initial-cluster get fresh IDs derived from their peer URLs "
        "and --initial-cluster-token. Restore every member with the same --initial-cluster and token, "
        "then start each with `serve` on its data dir.",
    )
    rs.add_argument("file", type=Path)
    rs.add_argument("--data-dir", type=Path, default=None, help="path to the data directory (default: NAME.etcd); "
                    "must not exist")
    rs.add_argument("--name", default="default", help="human-readable name for this member (default: default)")
    rs.add_argument("--initial-cluster", default="default=http://localhost:2380", metavar="NAME=URL,...",
                    help="initial cluster configuration for restore bootstrap "
                    "(default: default=http://localhost:2380)")
    rs.add_argument("--initial-cluster-token", default="etcd-cluster", metavar="TOKEN",
                    help="initial cluster token for the cluster during restore bootstrap (default: etcd-cluster)")
    rs.add_argument("--initial-advertise-peer-urls", default="http://localhost:2380", metavar="URL",
                    help="this member's peer URL, as in --initial-cluster (default: http://localhost:2380)")
    rs.add_argument("--skip-hash-check", action="store_true",
                    help="ignore snapshot integrity hash value (required if copied from data directory)")


def _add_bench(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from real_net import bench

    bench.add_arguments(
        sub.add_parser(
            "bench",
            help="measure requests/s and latency of raftkv or any etcd endpoint",
            description=bench.__doc__.split("\n\n")[0] if bench.__doc__ else None,
        )
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="raftkv",
        description="raftkv: an etcd-compatible key-value store on one Raft core (the real cluster).",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="{cluster,serve,snapshot,certs,bench}")
    _add_cluster(sub)
    _add_serve(sub)
    _add_snapshot(sub)
    _add_certs(sub)
    _add_bench(sub)
    return p


def _serve(args: argparse.Namespace) -> int:
    from real_net.server import ServerConfig, parse_initial_cluster, serve

    logging.basicConfig(
        level=args.log_level.upper(),
        format=f"%(asctime)s {args.name} %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    config = ServerConfig(
        name=args.name,
        data_dir=args.data_dir,
        listen_client_url=args.listen_client,
        listen_peer_url=args.listen_peer,
        initial_cluster=parse_initial_cluster(args.initial_cluster),
        advertise_client_url=args.advertise_client,
        initial_advertise_peer_url=args.advertise_peer,
        initial_cluster_state=args.initial_cluster_state,
        initial_cluster_token=args.initial_cluster_token,
        cert_file=args.cert,
        key_file=args.key,
        trusted_ca_file=args.trusted_ca,
        client_cert_auth=args.client_cert_auth,
        peer_cert_file=args.peer_cert_file,
        peer_key_file=args.peer_key_file,
        peer_trusted_ca_file=args.peer_trusted_ca_file,
        election_timeout=args.election_timeout,
        heartbeat_interval=args.heartbeat_interval,
        snapshot_count=args.snapshot_count,
        max_request_bytes=args.max_request_bytes,
        request_timeout=args.request_timeout,
        unsafe_no_fsync=args.unsafe_no_fsync,
        client_api=args.client_api,
    )
    return asyncio.run(serve(config))


def _cluster(args: argparse.Namespace) -> int:
    from real_net.launcher import run_cluster

    extra: list[str] = []
    if args.election_timeout is not None:
        extra += ["--election-timeout", str(args.election_timeout)]
    if args.heartbeat_interval is not None:
        extra += ["--heartbeat-interval", str(args.heartbeat_interval)]
    if args.snapshot_count is not None:
        extra += ["--snapshot-count", str(args.snapshot_count)]
    if args.unsafe_no_fsync:
        extra.append("--unsafe-no-fsync")
    return run_cluster(
        args.data_dir.resolve(), args.nodes, plain=args.plain, client_cert_auth=args.client_cert_auth, extra=extra,
        restore=args.restore, skip_hash_check=args.skip_hash_check,
    )  # fmt: skip


def _snapshot(args: argparse.Namespace) -> int:
    if args.snapshot_command == "status":
        from real_net.snapshot_file import format_status, status

        try:
            st = status(args.file.read_bytes())
        except RaftKVError as e:
            raise type(e)(f"{args.file}: {e}") from None
        sys.stdout.write(format_status(st, args.write_out))
        return 0
    from real_net.restore import RestoreConfig, report, restore

    done = restore(
        RestoreConfig(
            snapshot_path=args.file,
            name=args.name,
            data_dir=args.data_dir,
            initial_cluster=args.initial_cluster,
            initial_cluster_token=args.initial_cluster_token,
            initial_advertise_peer_urls=args.initial_advertise_peer_urls,
            skip_hash_check=args.skip_hash_check,
        )
    )
    print(report(done))
    return 0


def _certs(args: argparse.Namespace) -> int:
    from real_net.certs import ensure_certs

    names = [n for n in args.names.split(",") if n]
    hosts = [h for h in args.hosts.split(",") if h]
    paths = ensure_certs(args.dir, names, hosts=hosts)
    print(f"CA:      {paths.ca}  (key {paths.ca_key})")
    for name, pair in paths.members.items():
        print(f"{name + ':':8} {pair.cert}  (key {pair.key})")
    print(f"client:  {paths.client.cert}  (key {paths.client.key})")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "cluster":
            return _cluster(args)
        if args.command == "certs":
            return _certs(args)
        if args.command == "snapshot":
            return _snapshot(args)
        from real_net.bench import run_bench

        return run_bench(args)
    except (RaftKVError, OSError, ValueError) as e:
        print(f"raftkv: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

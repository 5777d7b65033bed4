"""etcd-sdk-python (module pyetcd, a maintained fork of etcd3; needs protobuf added) against the endpoints on the command line.

Usage: etcd_sdk_python_scenario.py URL,URL,URL [--cacert F --cert F --key F]. Prints one JSON object.
Runs in its own virtualenv (see ../support.py); the scenario is _sync_scenario.py.
"""

import argparse
import json
import sys
from urllib.parse import urlsplit

import pyetcd as etcd3
from pyetcd import events

from _sync_scenario import run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("endpoints")
    ap.add_argument("--cacert")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    args = ap.parse_args()

    def client(url: str) -> etcd3.Etcd3Client:
        u = urlsplit(url)
        return etcd3.client(
            host=u.hostname, port=u.port, ca_cert=args.cacert, cert_key=args.key, cert_cert=args.cert, timeout=10
        )

    a, b, c = (client(u) for u in args.endpoints.split(","))
    out = run(etcd3, a, b, c, events)
    out["library"] = {"name": "etcd-sdk-python", "version": getattr(etcd3, "__version__", "?")}
    json.dump(out, sys.stdout)
    for x in (a, b, c):
        x.close()


if __name__ == "__main__":
    main()

"""The ``raftkv`` command line: ``cluster`` as a user runs it, ``certs``, and the help texts.

The cluster test runs ``python -m real_net cluster`` as a user would, uses what
it prints and writes (the etcdctl line, etcdctl.env, cluster.json), plays a
fault tool (SIGKILL a member by the pid in cluster.json, restart it from its
``argv``), and stops the launcher with SIGTERM: every member, including the
one the "tool" restarted, must be gone afterwards.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from real_net.__main__ import parser
from real_net.launcher import even_size_warning

from ..api.support import require_binary
from .support import read_until

pytestmark = pytest.mark.timeout(120)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_cluster_command_starts_members_writes_its_files_and_stops_them_all(tmp_path: Path) -> None:
    require_binary("etcdctl")
    data = tmp_path / "data"
    launcher = subprocess.Popen(
        [sys.executable, "-m", "real_net", "cluster", "--nodes", "3", "--data-dir", str(data)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    pids: list[int] = []
    restarted: subprocess.Popen[bytes] | None = None
    try:
        out = read_until(launcher, "Ctrl-C", 60)
        meta = json.loads((data / "cluster.json").read_text())
        pids = [m["pid"] for m in meta["members"]]
        assert [m["name"] for m in meta["members"]] == ["n1", "n2", "n3"]
        assert all(m["client_url"].startswith("https://127.0.0.1:") for m in meta["members"])
        assert {meta["ca"], meta["cert"], meta["key"]} <= {str(p) for p in (data / "certs").iterdir()}
        # The printed etcdctl line works as pasted.
        line = next(ln.strip() for ln in out.splitlines() if ln.strip().startswith("etcdctl "))
        listed = subprocess.run(shlex.split(line), capture_output=True, text=True, timeout=20)
        assert listed.returncode == 0 and listed.stdout.count("started") == 3, listed
        # So does etcdctl.env.
        env_run = subprocess.run(
            ["bash", "-c", f". {data / 'etcdctl.env'} && etcdctl put foo bar && etcdctl get foo"],
            capture_output=True, text=True, timeout=20,
        )  # fmt: skip
        assert env_run.stdout == "OK\nfoo\nbar\n", env_run
        # A fault tool: SIGKILL n2 by its pid, then restart it from its argv.
        os.kill(pids[1], signal.SIGKILL)
        restarted = subprocess.Popen(meta["members"][1]["argv"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            r = subprocess.run(["bash", "-c", f". {data / 'etcdctl.env'} && etcdctl endpoint health"],
                               capture_output=True, text=True, timeout=20)  # fmt: skip
            if r.returncode == 0:
                break
            assert time.monotonic() < deadline, r
            time.sleep(0.2)
        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(20) == 0
        assert restarted.wait(15) == 0, "the launcher stops a member restarted from cluster.json too"
        assert not any(_alive(p) for p in pids)
    finally:
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if restarted is not None and restarted.poll() is None:
            restarted.kill()
            restarted.wait()
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
        launcher.wait(10)
        for pipe in (launcher.stdout, launcher.stderr):
            if pipe is not None:
                pipe.close()


def test_certs_command_writes_a_ca_member_and_client_certificates(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "real_net", "certs", str(tmp_path), "--names", "a,b"],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    names = {p.name for p in tmp_path.iterdir()}
    assert {"ca.pem", "ca-key.pem", "a.pem", "a-key.pem", "b.pem", "b-key.pem", "client.pem", "client-key.pem"} <= names


def test_even_cluster_sizes_get_a_warning_that_explains_odd_sizes() -> None:
    assert even_size_warning(3) is None
    warning = even_size_warning(4)
    assert warning is not None and "tolerate 1 failure" in warning and "odd sizes" in warning
    with pytest.raises(SystemExit):
        parser().parse_args(["cluster", "--nodes", "9", "--data-dir", "x"])


def test_every_option_of_every_command_is_explained_in_its_help() -> None:
    top = parser()
    sub = next(a for a in top._actions if a.dest == "command")
    for name, p in sub.choices.items():  # type: ignore[union-attr]
        for action in p._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"{name} {action.option_strings[0]} has no help text"
        assert p.format_help()

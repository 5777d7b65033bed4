"""python -m sim check: exit statuses, --json, bad input, pictures."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from sim.__main__ import SUBCOMMANDS, main
from sim.check.generate import Shape, Workload, generate
from sim.history import write_history

from .examples import history, stale_read


def write(tmp_path: Path, ops: list, name: str = "h.jsonl") -> str:
    path = tmp_path / name
    write_history(ops, path)
    return str(path)


def test_linearizable_history_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ok = history((1, "put", "x", "a", None, 0.0, 1.0), (2, "get", "x", None, "a", 2.0, 3.0))
    assert main(["check", write(tmp_path, ok)]) == 0
    assert "linearizable" in capsys.readouterr().out


def test_violation_exits_1_and_prints_the_fragment(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", write(tmp_path, stale_read())]) == 1
    out = capsys.readouterr().out
    assert "not linearizable" in out and "get(x) -> a" in out and "line 3" in out


def test_timeout_exits_2(tmp_path: Path) -> None:
    hard = generate(Shape(800, 50, 1, workload=Workload.MIXED, info_fraction=0.1), random.Random(7))
    assert main(["check", write(tmp_path, hard), "--timeout", "0.05"]) == 2


def test_bad_input_exits_3_naming_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.jsonl"
    good = json.dumps({"client": 1, "op": "get", "key": "x", "value": None, "output": None,
                       "call": 0, "return": 1, "status": "ok"})
    path.write_text(good + "\n" + good.replace('"return": 1', '"return": -1') + "\n")
    assert main(["check", str(path)]) == 3
    err = capsys.readouterr().err
    assert "line 2" in err and "before call" in err


def test_missing_file_and_bad_options_exit_3(tmp_path: Path) -> None:
    assert main(["check", str(tmp_path / "nope.jsonl")]) == 3
    assert main(["check", write(tmp_path, stale_read()), "--model", "graph"]) == 3
    assert main(["check", write(tmp_path, stale_read()), "--kind", "watch", "--plot", "x.png"]) == 3


def test_json_prints_one_object_on_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", write(tmp_path, stale_read()), "--json"]) == 1
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    obj = json.loads(out)
    assert obj["verdict"] == "not linearizable"
    assert isinstance(obj["seconds"], float) and obj["explored"] > 0
    assert [op["line"] for op in obj["fragment"]["ops"]] == [1, 2, 3]
    assert [op["line"] for op in obj["fragment"]["cannot_be_ordered"]] == [3]


def test_json_of_a_linearizable_history_has_no_fragment(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ok = history((1, "put", "x", "a", None, 0.0, 1.0))
    main(["check", write(tmp_path, ok), "--json"])
    obj = json.loads(capsys.readouterr().out)
    assert obj["verdict"] == "linearizable" and "fragment" not in obj


def test_plot_and_html_are_written_and_the_page_shows_the_counterexample(tmp_path: Path) -> None:
    png, page = tmp_path / "t.png", tmp_path / "t.html"
    assert main(["check", write(tmp_path, stale_read()), "--plot", str(png), "--html", str(page)]) == 1
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and "<script>" in text
    # Each counterexample op is a highlighted bar whose hover text describes it.
    assert text.count('class="op cx"') == 3
    for call in ("put(x, a)", "put(x, b)", "get(x) -&gt; a"):
        assert call in text
    assert "http" not in text.split("<svg", 1)[0]  # self-contained: nothing fetched


def test_register_model_option(tmp_path: Path) -> None:
    ops = history((1, "put", "x", "a", None, 0.0, 1.0), (2, "get", "y", None, "a", 2.0, 3.0))
    path = write(tmp_path, ops)
    assert main(["check", path]) == 1
    assert main(["check", path, "--model", "register"]) == 0


def test_help_explains_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--model", "--timeout", "--plot", "--html", "--json", "--kind", "--cache-cap"):
        assert option in out
    assert "Exit status" in out


def test_subcommands_are_registered_one_line_each() -> None:
    assert "sim.check.cli:add_check" in SUBCOMMANDS and "sim.check.cli:add_check_bench" in SUBCOMMANDS


def test_python_dash_m_sim_runs_as_a_program(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "sim", "check", write(tmp_path, stale_read()), "--json"],
                          capture_output=True, text=True, cwd=Path(__file__).parents[3])
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["verdict"] == "not linearizable"


def test_check_bench_runs_a_tiny_case(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-bench", "--sizes", "200", "--clients", "5", "--in-process"]) == 0
    out = capsys.readouterr().out
    assert out.count("| not linearizable |") == 2 and out.count("|     linearizable |") == 2

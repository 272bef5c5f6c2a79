"""`persd execute IN.jsonl -o OUT.jsonl`, run as users run it: a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIMITS_ENV = {"EXECUTOR_MEMORY_MB": "256", "EXECUTOR_TIMEOUT_S": "2"}


def persd(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        cwd=ROOT,
        env=os.environ | LIMITS_ENV | (env or {}),
        capture_output=True,
        text=True,
        timeout=300,
    )


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


ADD_TESTS = {"format": "asserts", "asserts": ["assert add(1, 2) == 3", "assert add(0, 0) == 0"]}


def test_scores_a_file_in_order_with_progress(tmp_path: Path) -> None:
    rows = [
        {
            "id": "good",
            "code": "def add(a, b):\n    return a + b\n",
            "tests": ADD_TESTS,
            "entry_point": "add",
        },
        {
            "id": 7,
            "code": "def add(a, b):\n    return a - b\n",
            "tests": ADD_TESTS,
            "entry_point": "add",
        },
        {"code": "def add(a, b)\n", "tests": ADD_TESTS, "entry_point": "add", "timeout_s": 1},
    ] * 4
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    proc = persd("execute", str(src), "-o", str(out), "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["id"], r["outcome"]) for r in results] == [
        ("good", "passed"),
        (7, "failed"),
        (None, "syntax_error"),
    ] * 4
    assert results[1]["feedback"] == "AssertionError\nINPUT: add(1, 2)\nOUTPUT: -1\nEXPECTED: 3"
    assert [t["status"] for t in results[1]["test_results"]] == ["failed", "passed"]
    assert "12/12" in proc.stderr  # the progress bar
    assert proc.stderr.rstrip().endswith(f"4/12 passed; results in {out}")


def test_malformed_json_names_the_line_and_runs_nothing(tmp_path: Path) -> None:
    good = {"code": "def add(a, b):\n    return a + b\n", "tests": ADD_TESTS, "entry_point": "add"}
    src = write_jsonl(tmp_path / "in.jsonl", [good, "{not json", good])
    out = tmp_path / "out.jsonl"
    proc = persd("execute", str(src), "-o", str(out))
    assert proc.returncode == 2
    assert proc.stderr == (
        f"persd: {src} line 2: not valid JSON: Expecting property name enclosed in double quotes:"
        " line 1 column 2 (char 1)\n"
    )
    assert not out.exists()


def test_invalid_job_names_the_line_and_the_fields(tmp_path: Path) -> None:
    bad = {
        "code": "x = 1",
        "tests": {"format": "asserts", "asserts": ["f(1) == 2"]},
        "entry_point": "f x",
    }
    src = write_jsonl(tmp_path / "in.jsonl", ["", bad])
    proc = persd("execute", str(src), "-o", str(tmp_path / "out.jsonl"))
    assert proc.returncode == 2
    assert proc.stderr == (
        f"persd: {src} line 2: tests.asserts.asserts: Value error, test 0 must be a single assert"
        " statement; entry_point: Value error, 'f x' is not a Python identifier\n"
    )


def test_missing_input_file(tmp_path: Path) -> None:
    proc = persd("execute", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "out.jsonl"))
    assert proc.returncode == 2
    assert proc.stderr == f"persd: {tmp_path / 'nope.jsonl'}: no such file\n"


def test_refuses_without_isolation_and_says_why(tmp_path: Path) -> None:
    good = {"code": "def add(a, b):\n    return a + b\n", "tests": ADD_TESTS, "entry_point": "add"}
    src = write_jsonl(tmp_path / "in.jsonl", [good])
    proc = persd(
        "execute",
        str(src),
        "-o",
        str(tmp_path / "out.jsonl"),
        env={"EXECUTOR_BWRAP": "/nonexistent/bwrap"},
    )
    assert proc.returncode == 2
    assert proc.stderr.endswith(
        "persd: refusing to run untrusted code: this host lacks bubblewrap ('/nonexistent/bwrap'"
        " not found; apt-get install bubblewrap) (set EXECUTOR_ALLOW_INSECURE=true only for code"
        " you trust)\n"
    )

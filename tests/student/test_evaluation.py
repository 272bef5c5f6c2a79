"""``persd eval``: datasets, the pass@k estimator, and a real run through vLLM and the sandbox."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from services.student.datasets import (
    EvalTask,
    docstring_examples,
    load_humaneval,
    load_mbpp_jsonl,
    mbpp_task,
)
from services.student.passk import ks_for, pass_at_k
from shared.errors import InvalidInput
from shared.prompts import generation_prompt
from tests.student.conftest import loaded_adapters, register_adapter
from tests.support.lora import train_memorising_adapter
from tests.support.vllm import tiny_student_path

ADD = {
    "task_id": 11,
    "text": "Write a function to add two numbers.",
    "code": "def add(a, b):\r\n  return a + b",
    "test_list": ["assert add(1, 2) == 3", "assert add(2, 2) == 4", "assert add(0, 0) == 0"],
}
NEG = {
    "task_id": 12,
    "text": "Write a function to negate a number.",
    "code": "import math\ndef neg(x):\n    return -x",
    "test_list": ["assert neg(1) == -1", "assert neg(-2) == 2", "assert neg(0) == 0"],
}


def test_pass_at_k_is_the_unbiased_estimator() -> None:
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(10, 3, 5) == pytest.approx(1 - 21 / 252)
    assert pass_at_k(5, 0, 1) == 0.0
    assert pass_at_k(5, 3, 3) == 1.0  # fewer than k wrong samples
    assert ks_for(1) == [1] and ks_for(20) == [1, 10] and ks_for(100) == [1, 10, 100]
    with pytest.raises(ValueError) as err:
        pass_at_k(3, 4, 1)
    assert str(err.value) == "pass@k needs 0 <= c <= n and 1 <= k <= n, got n=3 c=4 k=1"


def test_humaneval_seen_tests_are_the_docstring_examples() -> None:
    tasks = {t.task_id: t for t in load_humaneval()}
    assert len(tasks) == 164
    t0 = tasks["HumanEval/0"]
    assert (t0.description, t0.entry_point) == ("", "has_close_elements")
    assert t0.header.startswith("from typing import List\n\n\ndef has_close_elements(")
    assert t0.seen_tests == {
        "format": "io",
        "cases": [
            {"call": "has_close_elements([1.0, 2.0, 3.0], 0.5)", "expected": "False"},
            {"call": "has_close_elements([1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3)", "expected": "True"},
        ],
    }
    assert t0.hidden_tests["format"] == "check"
    assert "def check(candidate):" in t0.hidden_tests["check"]
    # "f(x) = y" examples count too.
    assert tasks["HumanEval/102"].seen_tests["cases"] == [
        {"call": "choose_num(12, 15)", "expected": "14"},
        {"call": "choose_num(13, 12)", "expected": "-1"},
    ]
    # The hidden check never shows up in what a prompt is built from.
    for task in tasks.values():
        assert "def check(" not in task.header + task.description


def test_docstring_example_forms() -> None:
    prompt = (
        "def f(x):\n"
        '    """Double it.\n'
        "    f(2) ➞ 4\n"
        "    f(3) returns 6  # obviously\n"
        "    f(1, y=2) == 2.\n"
        "    g(1) == 5\n"
        '    """\n'
    )
    assert docstring_examples(prompt, "f") == [
        {"call": "f(2)", "expected": "4"},
        {"call": "f(3)", "expected": "6"},
        {"call": "f(1, y=2)", "expected": "2"},
    ]


def test_mbpp_shows_and_uses_only_the_first_test(tmp_path) -> None:
    assert mbpp_task(NEG) == EvalTask(
        task_id="12",
        description=(
            "Write a function to negate a number.\nYour code should pass this test:\n"
            "assert neg(1) == -1"
        ),
        header="def neg(x):",
        entry_point="neg",
        seen_tests={"format": "asserts", "asserts": ["assert neg(1) == -1"]},
        hidden_tests={"format": "asserts", "asserts": NEG["test_list"]},
    )
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(ADD) + "\n" + json.dumps({"text": "x", "code": "y"}) + "\n")
    with pytest.raises(InvalidInput) as err:
        load_mbpp_jsonl(bad)
    assert err.value.message == (
        f"{bad}:2: not an MBPP task (KeyError: 'test_list'); expected JSON with text, code"
        " and test_list (a list of asserts)"
    )


def _eval(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [sys.executable, "-m", "services.cli", "eval", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=os.environ | env,
    )


def test_eval_reports_pass_at_k_per_step(db, clean_server, tmp_path) -> None:
    data = tmp_path / "mbpp.jsonl"
    data.write_text(json.dumps(ADD) + "\n" + json.dumps(NEG) + "\n")
    add = mbpp_task(ADD)
    path = train_memorising_adapter(
        tiny_student_path(),
        [(generation_prompt(add.description, add.header), "    return a + b\n")],
        tmp_path / "adapter",
    )
    adapter_id = register_adapter(path, "eval")
    out = tmp_path / "report.json"
    args = ["--dataset", str(data), "--steps", "2", "--samples", "2"]
    done = _eval([*args, "--adapter", str(adapter_id), "--out", str(out)], clean_server.env)
    assert done.returncode == 0, done.stderr

    report = json.loads(out.read_text())
    assert [(r["step"], r["pass@1"], r["generated"]) for r in report["per_step"]] == [
        (1, 0.5, 4),  # add: both samples memorised; neg: both wrong
        (2, 0.5, 2),  # add carried forward unchanged; neg repaired (and still wrong)
    ]
    assert (report["tasks"], report["samples"], report["steps"], report["adapter_id"]) == (
        2, 2, 2, adapter_id,
    )  # fmt: skip
    by_id = {t["task_id"]: t for t in report["per_task"]}
    assert by_id["11"]["correct_per_step"] == [2, 2]
    assert by_id["12"]["correct_per_step"] == [0, 0]
    add_steps = by_id["11"]["samples"][0]
    assert [s["generated"] for s in add_steps] == [True, False]
    assert add_steps[0]["code"] == add_steps[1]["code"] == "def add(a, b):\n    return a + b\n"
    assert done.stdout.splitlines()[-3:] == [
        "step 1: pass@1 0.5000  (4 generated)",
        "step 2: pass@1 0.5000  (2 generated)",
        f"report: {out}",
    ]
    assert "eval: 100%" in done.stderr  # the progress bar
    assert loaded_adapters(clean_server) == set()  # loaded for the run only

    base = _eval(
        ["--dataset", "humaneval", "--limit", "2", "--steps", "2", "--base"], clean_server.env
    )
    assert base.returncode == 0, base.stderr
    assert base.stdout.splitlines()[-3:-1] == [
        "step 1: pass@1 0.0000  (2 generated)",
        "step 2: pass@1 0.0000  (2 generated)",
    ]
    written = base.stdout.splitlines()[-1].removeprefix("report: ")
    assert json.loads(Path(written).read_text())["model"] == clean_server.model

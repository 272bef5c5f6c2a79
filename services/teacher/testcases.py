"""The literal (inputs, expected value) pairs of a task's tests, for the hard-coding guard.

Only cases whose call arguments and expected value are Python literals are returned: a program
can only hard-code a value it can write down. Tests in every accepted format are read:
``assert f(1, 2) == 3`` (MBPP), ``assert candidate(1, 2) == 3`` inside ``check`` (HumanEval) and
``call``/``expected`` pairs (IO).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter

from shared import pyast
from shared.schemas.testsuite import AssertTests, CheckTests, IOTests, TestSuite

_SUITE = TypeAdapter(TestSuite)
_MISSING = object()


@dataclass(frozen=True)
class Case:
    text: str  # the call as written in the test, for rejection messages
    args: tuple[Any, ...]
    expected: Any


def _literal(node: ast.AST) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _MISSING


def _case(call: ast.AST, expected: ast.AST, names: set[str]) -> Case | None:
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)):
        return None
    if call.func.id not in names or call.keywords:
        return None
    args = tuple(_literal(a) for a in call.args)
    value = _literal(expected)
    if value is _MISSING or any(a is _MISSING for a in args):
        return None
    return Case(ast.unparse(call), args, value)


def _from_asserts(tree: ast.AST, names: set[str]) -> list[Case]:
    cases = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Assert):
            continue
        test = node.test
        if (
            isinstance(test, ast.Compare)
            and len(test.ops) == 1
            and isinstance(test.ops[0], ast.Eq | ast.Is)
        ):
            left, right = test.left, test.comparators[0]
            case = _case(left, right, names) or _case(right, left, names)
        else:
            case = _case(test, ast.Constant(True), names)
        if case is not None:
            cases.append(case)
    return cases


def literal_cases(suite: dict[str, Any], entry_point: str) -> list[Case]:
    parsed = _SUITE.validate_python(suite)
    names = {entry_point, "candidate"}
    if isinstance(parsed, AssertTests):
        return [c for a in parsed.asserts for c in _from_asserts(pyast.parse(a), names)]
    if isinstance(parsed, CheckTests):
        return _from_asserts(pyast.parse(parsed.check), names)
    assert isinstance(parsed, IOTests)
    cases = []
    for io in parsed.cases:
        case = _case(
            pyast.parse(io.call, mode="eval").body,
            pyast.parse(io.expected, mode="eval").body,
            {entry_point},
        )
        if case is not None:
            cases.append(case)
    return cases

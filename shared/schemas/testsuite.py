"""How a task's tests are written down, in each of the three accepted formats."""

from __future__ import annotations

import ast
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.enums import TestFormat


def _check_python(source: str, what: str, mode: str = "exec") -> None:
    try:
        ast.parse(source, mode=mode)
    except SyntaxError as exc:
        raise ValueError(f"{what} is not valid Python: {exc.msg} (line {exc.lineno})") from None


class AssertTests(BaseModel):
    """MBPP style: each test is one ``assert`` statement."""

    model_config = ConfigDict(extra="forbid")
    format: Literal[TestFormat.ASSERTS] = TestFormat.ASSERTS
    asserts: list[str] = Field(min_length=1)

    @field_validator("asserts")
    @classmethod
    def _valid(cls, asserts: list[str]) -> list[str]:
        for i, test in enumerate(asserts):
            _check_python(test, f"test {i}")
            tree = ast.parse(test)
            if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assert):
                raise ValueError(f"test {i} must be a single assert statement")
        return asserts


class CheckTests(BaseModel):
    """HumanEval style: a ``check(candidate)`` function called with the entry point."""

    model_config = ConfigDict(extra="forbid")
    format: Literal[TestFormat.CHECK] = TestFormat.CHECK
    check: str

    @field_validator("check")
    @classmethod
    def _valid(cls, check: str) -> str:
        _check_python(check, "check")
        tree = ast.parse(check)
        if not any(isinstance(n, ast.FunctionDef) and n.name == "check" for n in tree.body):
            raise ValueError("check must define a function named check(candidate)")
        return check


class IOCase(BaseModel):
    model_config = ConfigDict(extra="forbid")
    call: str  # e.g. "add(1, 2)"
    expected: str  # a Python expression, e.g. "3"

    @field_validator("call", "expected")
    @classmethod
    def _valid(cls, expr: str, info) -> str:
        _check_python(expr, info.field_name, mode="eval")
        return expr


class IOTests(BaseModel):
    """Input/expected pairs: the call's value must equal the expected expression's value."""

    model_config = ConfigDict(extra="forbid")
    format: Literal[TestFormat.IO] = TestFormat.IO
    cases: list[IOCase] = Field(min_length=1)


TestSuite = Annotated[AssertTests | CheckTests | IOTests, Field(discriminator="format")]

"""How a task's tests are written down, in each of the three accepted formats."""

from __future__ import annotations

import ast
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared import pyast
from shared.enums import TestFormat


def _check_python(source: str, what: str, mode: str = "exec") -> None:
    try:
        pyast.parse(source, mode=mode)
    except SyntaxError as exc:
        raise ValueError(f"{what} is not valid Python: {exc.msg} (line {exc.lineno})") from None


def _format_is_required(schema: dict) -> None:
    """``format`` picks the suite's kind: it has a default for Python callers, but a JSON
    document must name it (the discriminator reads it), so the schema says it is required."""
    required = schema.setdefault("required", [])
    if "format" not in required:
        required.insert(0, "format")


# String formats for Python source, named in the OpenAPI document: JSON Schema cannot say "valid
# Python", so the format's name and description do (the server parses each).
def python(kind: str, description: str) -> dict:
    return {"format": f"python-{kind}", "description": description}


class AssertTests(BaseModel):
    """MBPP style: each test is one ``assert`` statement."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_format_is_required)
    format: Literal[TestFormat.ASSERTS] = TestFormat.ASSERTS
    asserts: list[
        Annotated[str, Field(json_schema_extra=python("assert", "one Python assert statement"))]
    ] = Field(min_length=1)

    @field_validator("asserts")
    @classmethod
    def _valid(cls, asserts: list[str]) -> list[str]:
        for i, test in enumerate(asserts):
            _check_python(test, f"test {i}")
            tree = pyast.parse(test)
            if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assert):
                raise ValueError(f"test {i} must be a single assert statement")
        return asserts


class CheckTests(BaseModel):
    """HumanEval style: a ``check(candidate)`` function called with the entry point."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_format_is_required)
    format: Literal[TestFormat.CHECK] = TestFormat.CHECK
    check: str = Field(json_schema_extra=python("check", "Python source defining check(candidate)"))

    @field_validator("check")
    @classmethod
    def _valid(cls, check: str) -> str:
        _check_python(check, "check")
        tree = pyast.parse(check)
        if not any(isinstance(n, ast.FunctionDef) and n.name == "check" for n in tree.body):
            raise ValueError("check must define a function named check(candidate)")
        return check


class IOCase(BaseModel):
    model_config = ConfigDict(extra="forbid")
    call: str = Field(json_schema_extra=python("expression", "a Python call, e.g. add(1, 2)"))
    expected: str = Field(json_schema_extra=python("expression", "a Python expression, e.g. 3"))

    @field_validator("call", "expected")
    @classmethod
    def _valid(cls, expr: str, info) -> str:
        _check_python(expr, info.field_name, mode="eval")
        return expr


class IOTests(BaseModel):
    """Input/expected pairs: the call's value must equal the expected expression's value."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_format_is_required)
    format: Literal[TestFormat.IO] = TestFormat.IO
    cases: list[IOCase] = Field(min_length=1)


TestSuite = Annotated[AssertTests | CheckTests | IOTests, Field(discriminator="format")]

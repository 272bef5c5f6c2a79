"""Task submission and task views."""

from __future__ import annotations

import ast
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from services.api.protocol.common import NO_NUL, Wire, no_nul
from shared import pyast
from shared.enums import AnswerSource, ExecutionOutcome, TaskStatus, TestSet, ValidationOutcome
from shared.schemas.testsuite import TestSuite, python


def header_functions(header: str) -> list[str]:
    """Names of the top-level functions a header defines; raises ValueError naming the problem.

    A header is a signature, possibly with imports and a docstring (HumanEval's prompts). A bare
    signature only parses once a body is added, indented like the header's last line.
    """
    try:
        tree = pyast.parse(header)
    except SyntaxError:
        lines = header.rstrip().splitlines()
        last = lines[-1] if lines else ""
        indent = last[: len(last) - len(last.lstrip())] or "    "
        try:
            tree = pyast.parse(header.rstrip() + f"\n{indent}pass\n")
        except SyntaxError as exc:
            raise ValueError(
                f"not a valid Python function signature: {exc.msg} (line {exc.lineno})"
            ) from None
    names = [n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    if not names:
        raise ValueError("must define a function, e.g. 'def add(a, b):'")
    return names


class TaskIn(BaseModel):
    """One coding task: text, signature, and tests in one of the three formats."""

    model_config = ConfigDict(extra="forbid")

    description: str = Field(min_length=1, max_length=20_000, pattern=NO_NUL)
    header: str = Field(
        min_length=1,
        max_length=20_000,
        json_schema_extra=python(
            "function-header",
            "Python that defines at least one function: its signature, optionally with imports"
            " and a docstring (a bare signature gets a body added to parse); the answer must"
            " start with it",
        ),
    )
    entry_point: str | None = Field(
        None,
        max_length=200,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="the function under test: one the header defines; defaults to the header's"
        " last",
    )
    seen_tests: TestSuite = Field(description="used for feedback to the student and the teacher")
    hidden_tests: TestSuite | None = Field(None, description="used only to score, never shown")
    reference_solution: str | None = Field(
        None, max_length=100_000, json_schema_extra=python("source", "a complete Python program")
    )
    source_dataset: str | None = Field(None, max_length=100, pattern=NO_NUL)
    source_id: str | None = Field(None, max_length=200, pattern=NO_NUL)
    max_steps: int = Field(3, ge=1, le=10, description="student attempts: the first plus repairs")
    idempotency_key: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        pattern=NO_NUL,
        description="a retry with the same key returns the task created first",
    )

    @field_validator(
        "description",
        "header",
        "entry_point",
        "reference_solution",
        "source_dataset",
        "source_id",
        "idempotency_key",
    )
    @classmethod
    def _storable(cls, value: str | None) -> str | None:
        return no_nul(value)

    @field_validator("header")
    @classmethod
    def _header_defines_a_function(cls, header: str) -> str:
        header_functions(header)
        return header

    @field_validator("entry_point")
    @classmethod
    def _entry_point_is_defined(cls, entry_point: str | None, info: ValidationInfo) -> str | None:
        header = info.data.get("header")  # absent when the header itself failed
        if entry_point is not None and header is not None:
            names = header_functions(header)
            if entry_point not in names:
                raise ValueError(
                    f"{entry_point!r} is not a function the header defines"
                    f" (it defines: {', '.join(names)})"
                )
        return entry_point

    @field_validator("reference_solution")
    @classmethod
    def _reference_parses(cls, code: str | None) -> str | None:
        if code is not None:
            try:
                pyast.parse(code)
            except SyntaxError as exc:
                raise ValueError(f"not valid Python: {exc.msg} (line {exc.lineno})") from None
        return code

    @model_validator(mode="after")
    def _default_entry_point(self) -> TaskIn:
        if self.entry_point is None:
            self.entry_point = header_functions(self.header)[-1]
        return self


class TaskBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tasks: list[TaskIn] = Field(min_length=1)


class TaskCreated(BaseModel):
    id: int
    status: TaskStatus
    created: bool = Field(description="false when an idempotency key matched an earlier task")
    idempotency_key: str | None


class TaskBatchCreated(BaseModel):
    tasks: list[TaskCreated]


class TaskSummary(Wire):
    id: int
    status: TaskStatus
    status_reason: str | None
    created_at: datetime
    updated_at: datetime
    entry_point: str
    source_dataset: str | None
    source_id: str | None
    answer_source: AnswerSource | None
    hidden_passed: bool | None


class ExecutionOut(Wire):
    id: int
    created_at: datetime
    test_set: TestSet
    outcome: ExecutionOutcome
    feedback: str
    error_type: str | None
    duration_ms: float
    test_results: list[dict[str, Any]]


class RefinementBrief(BaseModel):
    id: int
    round: int
    created_at: datetime
    teacher_model: str
    validation: ValidationOutcome
    rejection_reason: str | None
    code: str
    cost_usd: float
    executions: list[ExecutionOut]


class AttemptOut(Wire):
    id: int
    created_at: datetime
    step: int
    sample_index: int
    adapter_id: int | None
    model_name: str
    code: str
    latency_ms: float
    prompt_tokens: int
    completion_tokens: int
    executions: list[ExecutionOut]
    refinements: list[RefinementBrief]


class TaskDetail(TaskSummary):
    description: str
    header: str
    seen_tests: dict[str, Any]
    hidden_tests: dict[str, Any] | None
    reference_solution: str | None
    max_steps: int
    benchmark_match: str | None
    idempotency_key: str | None
    answer_code: str | None
    attempts: list[AttemptOut] = Field(
        description="the timeline: attempts per step, each with"
        " its executions and the teacher's refinements of it"
    )

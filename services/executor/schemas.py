"""The executor's public data: a job (a program and its tests) and its result."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from shared.enums import ExecutionOutcome, Forgery
from shared.schemas.testsuite import TestSuite

SUITE = TypeAdapter(TestSuite)


class TestStatus(StrEnum):
    """How one test went (an execution's outcome is the status of its first failure)."""

    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"
    TIMEOUT = "timeout"
    RESOURCE_LIMIT = "resource_limit"
    EARLY_EXIT = "early_exit"
    NOT_RUN = "not_run"  # a test after a timeout or crash, or after the program failed to load


class TestResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    index: int
    test: str  # the test as written (check format: each assertion, then check(<entry point>))
    status: TestStatus
    error_type: str | None = None
    feedback: str = ""


class ExecutionResult(BaseModel):
    """What the PERsD loop needs from one run: the outcome, per-test results in order, and the
    feedback text of the first failure ("" when passed)."""

    model_config = ConfigDict(extra="forbid")

    outcome: ExecutionOutcome
    test_results: list[TestResult]
    feedback: str
    error_type: str | None
    duration_ms: float
    forgery: Forgery | None = Field(
        None, description="set when the judge suspects the program of forging its verdict"
    )
    output: str = Field("", description="the first 4 KiB the program wrote to stdout/stderr")

    @property
    def passed(self) -> bool:
        return self.outcome is ExecutionOutcome.PASSED


class Job(BaseModel):
    """One program and the tests to run it against."""

    model_config = ConfigDict(extra="forbid")

    code: str
    tests: TestSuite
    entry_point: str = Field(min_length=1, max_length=200)
    timeout_s: float | None = Field(
        None, gt=0, le=600, description="per test; default from settings"
    )

    @field_validator("entry_point")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not value.isidentifier():
            raise ValueError(f"{value!r} is not a Python identifier")
        return value

    def wire(self, limits: dict[str, Any]) -> dict[str, Any]:
        return {
            "code": self.code,
            "tests": self.tests.model_dump(mode="json"),
            "entry_point": self.entry_point,
            "limits": limits,
        }

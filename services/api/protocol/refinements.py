"""Teacher refinements as the API shows them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from services.api.protocol.tasks import ExecutionOut
from shared.enums import RejectionReason, TeacherBackend, ValidationOutcome


class RefinementSummary(BaseModel):
    id: int
    created_at: datetime
    task_id: int
    attempt_id: int
    adapter_id: int | None = Field(description="the adapter version that made the failed attempt")
    round: int
    teacher_backend: TeacherBackend
    teacher_model: str
    validation: ValidationOutcome
    rejection_reason: RejectionReason | None
    error_type: str | None
    tokens_in: int
    tokens_out: int
    cost_usd: float
    latency_ms: float


class RefinementDetail(RefinementSummary):
    rejection_detail: str | None
    task_description: str
    header: str
    attempt_step: int
    attempt_code: str = Field(description="the student's failed attempt")
    attempt_execution: ExecutionOut | None = Field(
        description="the execution on the seen tests whose feedback the teacher was given"
    )
    code: str = Field(description="the teacher's refinement")
    executions: list[ExecutionOut] = Field(description="the refinement's validation runs")
    diff: str = Field(description="unified diff from the attempt to the refinement")
    prompt: list[dict[str, Any]]
    reply: str

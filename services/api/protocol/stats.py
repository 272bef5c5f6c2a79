"""The overview figures."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class CountPoint(BaseModel):
    t: datetime
    count: int


class PassRatePoint(BaseModel):
    t: datetime = Field(description="start of the bucket")
    attempts: int
    passed: int
    pass_rate: float


class AdapterPassRate(BaseModel):
    adapter_version: int | None = Field(description="null: the base model without an adapter")
    adapter_name: str
    attempts: int
    passed: int
    pass_rate: float
    points: list[PassRatePoint]


class TeacherStats(BaseModel):
    spend_usd: float
    refinements: int
    validated: int


class ActiveAdapter(BaseModel):
    version: int
    name: str


class Stats(BaseModel):
    generated_at: datetime
    since: datetime
    bucket_s: int
    tasks_total: int
    tasks_by_status: dict[str, int]
    tasks_per_minute: list[CountPoint] = Field(description="tasks created per minute, last hour")
    pass_rate: list[AdapterPassRate] = Field(
        description="step-1 attempts passing their seen tests, per adapter version over time"
    )
    teacher: TeacherStats
    queue_depths: dict[str, int] = Field(description="messages waiting per queue")
    active_adapter: ActiveAdapter | None

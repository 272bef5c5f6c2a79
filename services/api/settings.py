"""API settings (prefix ``API_``)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.config import http_urls, load
from shared.readiness import KINDS


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="API_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    # The student's vLLM server(s), comma-separated, as the student worker reads them (same
    # variable, same default); /readyz checks each. Empty skips the check (an API-only host).
    student_url: str = Field("http://127.0.0.1:8100", validation_alias="STUDENT_VLLM_URL")
    cors_origins: list[str] = Field(default_factory=list, description="closed by default")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="larger request bodies get 413")
    max_batch_tasks: int = Field(500, ge=1, description="tasks per POST /v1/tasks; more get 413")
    # A hot-swap loads the adapter into every replica and runs a canary: seconds, not millis.
    promote_timeout_s: float = Field(120.0, gt=0, description="wait for student.promote's reply")
    # Every open dashboard re-reads the figures on each pipeline event; a short cache keeps that
    # from turning into a stream of aggregate queries. 0 disables it.
    stats_cache_s: float = Field(1.0, ge=0, le=60)
    # Verified keys are remembered this long, so a revoked key can work this much longer.
    auth_cache_s: float = Field(5.0, ge=0, le=300)

    @field_validator("student_url")
    @classmethod
    def _student_urls(cls, value: str) -> str:
        return ",".join(http_urls(value))

    @property
    def student_urls(self) -> list[str]:
        return http_urls(self.student_url)

    # The worker kinds /readyz, `persd preflight --workers` and the dashboard header ask through
    # their own queues. Empty: none (an API-only host).
    ready_workers: str = Field(
        ",".join(KINDS.values()),
        description="worker kinds /readyz requires, comma-separated (empty: none)",
    )
    ready_deadline_s: float = Field(3.0, gt=0, le=30, description="wait for the workers' pongs")
    # /readyz is polled by orchestrators every few seconds; four queue round trips each time
    # would be the API's busiest work. 0 disables the cache.
    ready_cache_s: float = Field(5.0, ge=0, le=300, description="reuse a readiness answer")

    @field_validator("ready_workers")
    @classmethod
    def _kinds(cls, value: str) -> str:
        kinds = [k.strip() for k in value.split(",") if k.strip()]
        known = tuple(KINDS.values())
        unknown = [k for k in kinds if k not in known]
        if unknown:
            raise ValueError(
                f"unknown worker kind(s) {', '.join(unknown)}; known: {', '.join(known)}"
            )
        return ",".join(kinds)

    @property
    def ready_worker_kinds(self) -> list[str]:
        return self.ready_workers.split(",") if self.ready_workers else []

    sse_keepalive_s: float = Field(15.0, gt=0, description="comment lines keep proxies from idling")
    # Mark the dashboard's session cookie Secure (set when served over HTTPS).
    cookie_secure: bool = False


@lru_cache
def get_api_settings() -> ApiSettings:
    return load(ApiSettings)

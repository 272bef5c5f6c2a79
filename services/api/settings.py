"""API settings (prefix ``API_``)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.config import load


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="API_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    # Base URL of the student's vLLM server, checked by /readyz; empty skips the check.
    student_url: str = Field("", validation_alias="STUDENT_VLLM_URL")
    cors_origins: list[str] = Field(default_factory=list, description="closed by default")
    max_body_bytes: int = Field(1_000_000, ge=1024)


@lru_cache
def get_api_settings() -> ApiSettings:
    return load(ApiSettings)

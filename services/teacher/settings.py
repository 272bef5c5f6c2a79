"""Teacher settings (prefix ``TEACHER_``).

The teacher is the only component that spends money, so its knobs are about frugality: which
backend answers, how hard a flaky API is retried, how many rounds a task may take, and a daily
spend cap in tokens and in dollars. ``TEACHER_API_KEY`` is a ``SecretStr``: its value is read only
where the HTTP client is built and never appears in a repr, a log line or the database.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.config import load
from shared.errors import ConfigError

OPENAI_URL = "https://api.openai.com/v1"


class BackendName(StrEnum):
    """``TEACHER_BACKEND``: one of the backends a refinement records (shared.enums.TeacherBackend,
    same values), or ``auto``, which picks one per task."""

    OPENAI = "openai"  # any OpenAI-compatible endpoint: OpenAI, Azure, vLLM, ...
    REFERENCE = "reference"  # the task's own reference solution, no call, no cost
    REPLAY = "replay"  # replies recorded earlier, from a JSONL file
    AUTO = "auto"  # openai when configured, else reference, else replay, else needs_teacher


class Price(BaseModel):
    """USD per one million tokens."""

    model_config = ConfigDict(extra="forbid")
    input: Decimal = Field(ge=0)
    output: Decimal = Field(ge=0)


class TeacherSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TEACHER_", extra="ignore")

    backend: BackendName = BackendName.AUTO
    base_url: str = Field("", description="OpenAI-compatible /v1 URL; empty means OpenAI's")
    api_key: SecretStr | None = None
    # Set for Azure OpenAI's classic deployments API (base_url is then the resource endpoint).
    azure_api_version: str = ""
    model: str = "gpt-3.5-turbo"
    temperature: float = Field(0.0, ge=0, le=2)
    max_tokens: int = Field(1024, ge=16, description="reply length cap per call")
    timeout: float = Field(60.0, gt=0, description="seconds per HTTP request")

    # Retry policy for 408/409/429/5xx, timeouts and refused connections.
    max_attempts: int = Field(6, ge=1, description="HTTP tries per teacher call")
    backoff_base: float = Field(1.0, ge=0, description="seconds before the second try")
    backoff_max: float = Field(30.0, ge=0, description="cap of one computed backoff")
    retry_after_max: float = Field(
        120.0, ge=0, description="a longer Retry-After gives up the call (task waits, not lost)"
    )

    max_rounds: int = Field(2, ge=1, description="teacher calls per failed attempt")
    # Daily caps (UTC day); 0 means no cap.
    daily_token_cap: int = Field(0, ge=0)
    daily_cost_cap_usd: Decimal = Field(Decimal(0), ge=0)
    # Tokens added to a prompt's byte count when reserving budget for a call (chat template,
    # default system prompt): byte-level BPE never makes more tokens than bytes.
    reserve_overhead_tokens: int = Field(64, ge=0)
    resume_interval_s: float = Field(
        300.0,
        gt=0,
        description="how often beat sends scheduler.teacher_resume (retry tasks waiting for"
        " budget/teacher)",
    )

    prices: dict[str, Price] = Field(
        default_factory=dict,
        description='JSON: {"model": {"input": usd_per_1M, "output": usd_per_1M}, ...}',
    )
    replay_file: Path | None = None

    # Tasks matching an evaluation benchmark never become training examples.
    eval_benchmarks: list[str] = Field(
        default_factory=lambda: ["humaneval"], description='JSON list: "humaneval", "mbpp"'
    )
    mbpp_path: Path | None = Field(None, description="MBPP JSONL file (needed for 'mbpp')")
    heldout_percent: int = Field(10, ge=0, le=100, description="share of tasks held out")

    @field_validator("api_key", mode="before")
    @classmethod
    def _blank_key_is_none(cls, value: object) -> object:
        # Compose and .env templates pass an unset key as "" (TEACHER_API_KEY=${TEACHER_API_KEY:-}):
        # that is no key, not a key that every call would send and the API would refuse with 401.
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("eval_benchmarks")
    @classmethod
    def _benchmarks(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - {"humaneval", "mbpp"})
        if unknown:
            raise ValueError(f"unknown benchmark(s) {', '.join(unknown)}; use humaneval, mbpp")
        return value

    @property
    def uses_api(self) -> bool:
        """Whether tasks may reach the paid API (explicitly, or through ``auto``)."""
        if self.backend is BackendName.OPENAI:
            return True
        return self.backend is BackendName.AUTO and (
            self.api_key is not None or bool(self.base_url)
        )

    def price(self, model: str | None = None) -> Price | None:
        return self.prices.get(model or self.model)


def problems(s: TeacherSettings) -> list[str]:
    """Combinations no single field can check, each naming the variable to fix."""
    found = []
    if s.backend is BackendName.OPENAI and s.api_key is None and not s.base_url:
        found.append(
            "TEACHER_BACKEND: openai needs TEACHER_API_KEY, or TEACHER_BASE_URL for a keyless server"
        )
    if s.backend is BackendName.REPLAY and s.replay_file is None:
        found.append("TEACHER_BACKEND: replay needs TEACHER_REPLAY_FILE")
    if s.replay_file is not None and not s.replay_file.is_file():
        found.append(f"TEACHER_REPLAY_FILE: {s.replay_file} is not a file")
    if "mbpp" in s.eval_benchmarks and s.mbpp_path is None:
        found.append("TEACHER_EVAL_BENCHMARKS: mbpp needs TEACHER_MBPP_PATH")
    if s.mbpp_path is not None and not s.mbpp_path.is_file():
        found.append(f"TEACHER_MBPP_PATH: {s.mbpp_path} is not a file")
    if s.daily_cost_cap_usd and s.uses_api and s.price() is None:
        # A money cap over calls whose price is unknown would silently never trigger.
        found.append(
            f"TEACHER_DAILY_COST_CAP_USD: no price for model {s.model!r} in TEACHER_PRICES"
        )
    return found


def load_teacher_settings() -> TeacherSettings:
    """Read and check the settings; a ConfigError names every variable at fault."""
    settings = load(TeacherSettings)
    found = problems(settings)
    if found:
        raise ConfigError("invalid configuration: " + "; ".join(found))
    return settings


@lru_cache
def get_teacher_settings() -> TeacherSettings:
    return load_teacher_settings()

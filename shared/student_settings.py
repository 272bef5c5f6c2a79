"""Student settings (prefix ``STUDENT_``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.config import get_settings, http_urls, load


class StudentSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STUDENT_", extra="ignore")

    # Base URL(s) of the vLLM server(s), comma-separated for replicas. The API's /readyz reads
    # the same variable.
    vllm_url: str = Field("http://127.0.0.1:8100", description="comma-separated base URLs")
    # A local directory or a hub id (e.g. Qwen/Qwen2.5-Coder-0.5B-Instruct). Empty: the offline
    # tiny student under the data directory, built by `persd build-tiny-student`.
    model: str = ""
    # The name vLLM serves the base model under. Empty: `persd student-server` serves it under
    # its path (vLLM's default) and workers ask the server (/v1/models) for the name.
    served_model_name: str = ""

    temperature: float = Field(0.3, ge=0.0, le=2.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_tokens: int = Field(256, ge=1, le=8192)
    steps: int = Field(3, ge=1, le=20, description="multi-step inference: answer + repairs")
    concurrency: int = Field(16, ge=1, le=512, description="requests in flight to vLLM at once")
    request_timeout_s: float = Field(120.0, gt=0)
    # A server that is down or restarting is retried this long before an attempt gives up (the
    # Celery task then retries with backoff; nothing is lost).
    retry_for_s: float = Field(60.0, ge=0)
    # After the alias flips, how long the old version may keep serving in-flight requests before
    # it is unloaded anyway.
    drain_timeout_s: float = Field(30.0, ge=0)
    canary_prompt: str = "def add(a, b):\n"
    # A couple of tokens prove the adapter runs (prefill and a decode step) without queueing
    # long behind the load in vLLM's batch: the canary is on the promotion's critical path.
    canary_max_tokens: int = Field(2, ge=1)

    # Only used by `persd student-server`.
    host: str = "127.0.0.1"
    port: int = Field(8100, ge=1, le=65535)
    max_model_len: int = Field(2048, ge=64)
    max_lora_rank: int = Field(16, ge=1)
    max_loras: int = Field(2, ge=1)
    kv_cache_gib: int = Field(1, ge=1)
    # float32: vLLM's CPU backend would pick bfloat16 for "auto", whose coarse logits make a
    # LoRA adapter's effect on the tiny student vanish (and CPUs without bf16 units run fp32
    # faster). GPU hosts set STUDENT_DTYPE=auto or bfloat16.
    dtype: str = "float32"
    # uni: the model runs in vLLM's engine-core process. mp (vLLM's CPU default) adds a worker
    # process that busy-polls a core for a second after every request, which on a small host
    # slows the rest of the pipeline, and the hand-off adds latency (bench_vllm_executor.py
    # measures both). mp is needed for tensor parallelism.
    executor_backend: Literal["uni", "mp"] = Field(
        "uni", description="vLLM executor of `persd student-server` (mp for tensor parallelism)"
    )
    extra_args: str = Field("", description="more `vllm serve` flags, shell-quoted")

    @field_validator("vllm_url")
    @classmethod
    def _urls(cls, value: str) -> str:
        urls = http_urls(value)
        if not urls:
            raise ValueError("needs at least one URL, e.g. http://127.0.0.1:8100")
        return ",".join(urls)

    @property
    def urls(self) -> list[str]:
        return self.vllm_url.split(",")

    @property
    def model_path(self) -> str:
        return self.model or str(default_tiny_student_dir())


def default_tiny_student_dir() -> Path:
    return (get_settings().data_dir / "models" / "tiny-student").resolve()


@lru_cache
def get_student_settings() -> StudentSettings:
    return load(StudentSettings)

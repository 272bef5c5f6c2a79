"""Executor settings (prefix ``EXECUTOR_``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.config import load


class ExecutorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EXECUTOR_", extra="ignore")

    # Slots: one sandbox (its own uid, cgroups and zygote) per concurrently running job.
    slots: int = Field(2, ge=1, le=256, description="default workers of `persd execute` and pools")
    uid_base: int = Field(61000, ge=1000, description="first uid handed to sandbox slots")
    uid_count: int = Field(
        64, ge=1, le=65536, description="uids available: the most slots per host"
    )

    # Limits of one job.
    timeout_s: float = Field(
        3.0, gt=0, le=600, description="per test (the paper's 3 s), and for loading"
    )
    max_job_s: float = Field(30.0, gt=0, le=3600, description="wall clock of a whole job")
    cpu_s: float = Field(20.0, gt=0, le=3600, description="CPU time of each of the job's processes")
    memory_mb: int = Field(
        512,
        ge=64,
        le=65536,
        description="address space per process; the slot's cgroup adds scratch and overhead",
    )
    scratch_mb: int = Field(
        64, ge=1, le=65536, description="the job's writable tmpfs (/scratch, /tmp, /dev/shm)"
    )
    file_mb: int = Field(16, ge=1, le=65536, description="largest file a job may write")
    output_bytes: int = Field(
        1024 * 1024, ge=1024, description="stdout+stderr before the job is stopped"
    )
    nproc: int = Field(64, ge=4, le=4096, description="processes (and threads) of a job")
    nofile: int = Field(256, ge=16, le=65536, description="open files per process")

    # Host.
    allow_insecure: bool = Field(
        False,
        description="run untrusted code WITHOUT isolation when the host lacks it (never in production)",
    )
    bwrap: str = "bwrap"
    python: str = Field(
        "/usr/bin/python3", description="interpreter inside the sandbox (needs numpy)"
    )
    runtime_dir: Path = Field(
        Path("/run/persd-executor"), description="root-owned: sandbox files, uid locks"
    )
    cgroup_parent: str = Field(
        "persd-executor", description="cgroup (v1) under which slots get theirs"
    )

    @field_validator("max_job_s")
    @classmethod
    def _job_covers_a_test(cls, value: float, info: ValidationInfo) -> float:
        timeout = info.data.get("timeout_s")
        if timeout is not None and value < timeout:
            raise ValueError(f"must be at least EXECUTOR_TIMEOUT_S ({timeout:g})")
        return value

    @field_validator("uid_count")
    @classmethod
    def _uids_exist(cls, value: int, info: ValidationInfo) -> int:
        base = info.data.get("uid_base")
        if base is not None and base + value > 2**31 - 1:
            raise ValueError("EXECUTOR_UID_BASE + EXECUTOR_UID_COUNT is past the largest uid")
        return value

    @field_validator("python")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must be an absolute path")
        return value

    def job_limits(self, timeout_s: float | None = None) -> dict:
        """The limits the zygote applies to one job, in the form it reads."""
        timeout = timeout_s or self.timeout_s
        return {
            "timeout_s": timeout,
            "max_job_s": max(self.max_job_s, timeout),
            "cpu_s": self.cpu_s,
            "memory_mb": self.memory_mb,
            "file_bytes": self.file_mb * 1024 * 1024,
            "output_bytes": self.output_bytes,
            "nproc": self.nproc,
            "nofile": self.nofile,
        }


@lru_cache
def get_executor_settings() -> ExecutorSettings:
    return load(ExecutorSettings)

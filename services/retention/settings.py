"""Retention settings (prefix ``RETENTION_``)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.config import load
from shared.enums import RetentionKind


class RetentionSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RETENTION_", extra="ignore")

    lessons_size: int = Field(100, ge=0, description="cap of the lessons set (0: not kept)")
    abilities_size: int = Field(100, ge=0, description="cap of the abilities set (0: not kept)")
    probes_size: int = Field(100, ge=0, description="cap of the held-out probes set (0: not kept)")
    seed: str = Field(
        "persd",
        min_length=1,
        max_length=200,
        description="seeds the hash order in which eligible tasks become members; changing it"
        " changes only which tasks are added from then on (members are never removed)",
    )
    check_interval_s: float = Field(
        60.0,
        gt=0,
        description="how often beat sends scheduler.retention_check: a promoted version is"
        " measured within one interval (plus the measurement's own time)",
    )

    def size(self, kind: RetentionKind) -> int:
        return {
            RetentionKind.LESSONS: self.lessons_size,
            RetentionKind.ABILITIES: self.abilities_size,
            RetentionKind.PROBES: self.probes_size,
        }[kind]


@lru_cache
def get_retention_settings() -> RetentionSettings:
    return load(RetentionSettings)

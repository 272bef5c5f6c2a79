"""Typed configuration shared by every service.

Each service has its own settings class with its own environment prefix (``STUDENT_``,
``EXECUTOR_``, ...); the connection settings every process needs (``DATABASE_URL``,
``REDIS_URL``, ``PERSD_DATA_DIR``) live in :class:`CommonSettings`. Settings are read once through
:func:`get_settings`, whose cache tests clear with ``get_settings.cache_clear()``.

Validation happens at start-up and names the environment variable at fault, so a typo in a
deployment fails loudly before any work is accepted.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from shared.errors import ConfigError

DEFAULT_DATA_DIR = Path("var")


class CommonSettings(BaseSettings):
    """Connections and paths every process needs."""

    model_config = SettingsConfigDict(env_prefix="PERSD_", extra="ignore")

    data_dir: Path = Field(DEFAULT_DATA_DIR, description="SQLite file, adapters, models, logs")
    database_url: str = Field(
        "",
        validation_alias=AliasChoices("DATABASE_URL", "PERSD_DATABASE_URL"),
        description="SQLAlchemy URL; empty means a SQLite file under the data directory",
    )
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("REDIS_URL", "PERSD_REDIS_URL"),
        description="Celery broker, result backend, locks and pub/sub",
    )
    redis_key_prefix: str = Field(
        "persd:",
        description="Prefix for every Redis key persd writes, so deployments can share a server",
    )
    log_level: str = "INFO"

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        if not value:
            return value
        try:
            url = make_url(value)
        except (ArgumentError, ValueError):
            raise ValueError(
                "not a database URL; expected e.g. postgresql+psycopg://user@host:5432/db"
                " or sqlite:///path/persd.db"
            ) from None
        if url.get_backend_name() not in {"sqlite", "postgresql"}:
            raise ValueError(
                f"unsupported database {url.get_backend_name()!r}; use sqlite or postgresql"
            )
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"redis", "rediss", "unix"}:
            raise ValueError("must start with redis://, rediss:// or unix://")
        try:
            port = parts.port
        except ValueError:
            raise ValueError("has an invalid port") from None
        if parts.scheme != "unix" and not parts.hostname:
            raise ValueError("has no host")
        if port is not None and not 0 < port < 65536:
            raise ValueError("has an invalid port")
        db = parts.path.lstrip("/")
        if db and not db.isdigit():
            raise ValueError(f"database number {db!r} is not an integer")
        return value

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'persd.db').resolve()}"


S = TypeVar("S", bound=BaseSettings)


def http_urls(value: str) -> list[str]:
    """Comma-separated http(s) base URLs (vLLM replicas), trailing slashes dropped. One parser
    for every setting that names them, so the student worker and the API's /readyz agree."""
    urls = [u.strip().rstrip("/") for u in value.split(",") if u.strip()]
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"{url!r} is not an http(s) URL")
    return urls


def load(cls: type[S]) -> S:
    """Instantiate a settings class, turning validation errors into a ConfigError naming the
    environment variable."""
    try:
        return cls()
    except ValidationError as exc:
        prefix = cls.model_config.get("env_prefix", "")
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            # Aliased fields report the variable name itself (DATABASE_URL); others the field.
            var = field if field.isupper() else f"{prefix}{field}".upper()
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{var}: {msg}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None


@lru_cache
def get_settings() -> CommonSettings:
    return load(CommonSettings)

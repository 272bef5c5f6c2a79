from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.config import CommonSettings, load
from shared.errors import ConfigError


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        (
            "DATABASE_URL",
            "nonsense",
            "DATABASE_URL: not a database URL; expected e.g. postgresql+psycopg://user@host:5432/db"
            " or sqlite:///path/persd.db",
        ),
        ("DATABASE_URL", "postgresql://u@h:notaport/db", "DATABASE_URL: not a database URL"),
        (
            "DATABASE_URL",
            "mysql://u@h/db",
            "DATABASE_URL: unsupported database 'mysql'; use sqlite or postgresql",
        ),
        (
            "REDIS_URL",
            "http://127.0.0.1:6379",
            "REDIS_URL: must start with redis://, rediss:// or unix://",
        ),
        ("REDIS_URL", "redis://127.0.0.1:99999/0", "REDIS_URL: has an invalid port"),
        (
            "REDIS_URL",
            "redis://127.0.0.1:6379/x",
            "REDIS_URL: database number 'x' is not an integer",
        ),
    ],
)
def test_bad_url_is_named(monkeypatch, var: str, value: str, message: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as err:
        load(CommonSettings)
    assert message in err.value.message


def test_defaults_work_offline(monkeypatch, tmp_path) -> None:
    for var in ("DATABASE_URL", "PERSD_DATABASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PERSD_DATA_DIR", str(tmp_path))
    s = load(CommonSettings)
    assert s.resolved_database_url == f"sqlite:///{tmp_path.resolve()}/persd.db"
    assert s.redis_url.startswith("redis://")


@pytest.mark.parametrize(
    ("var", "value"), [("DATABASE_URL", "nonsense"), ("REDIS_URL", "http://nope")]
)
def test_worker_start_up_stops_on_bad_url(var: str, value: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "services.cli", "worker", "student"],
        env=os.environ | {var: value},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"persd: invalid configuration: {var}: ")


def test_worker_module_import_fails_naming_the_variable() -> None:
    # Celery imports the worker module itself in production; the error must still name the var.
    proc = subprocess.run(
        [sys.executable, "-c", "import services.executor.worker"],
        env=os.environ | {"REDIS_URL": "http://nope"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "REDIS_URL: must start with redis://" in proc.stderr


def test_configuration_reference_is_up_to_date() -> None:
    """docs/configuration.md is generated; a setting added without regenerating it is missed by
    every reader of the docs."""
    root = Path(__file__).resolve().parents[2]
    generated = subprocess.run(
        [sys.executable, str(root / "docs" / "gen_config.py")],
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
    ).stdout
    assert generated == (root / "docs" / "configuration.md").read_text(), (
        "docs/configuration.md is stale: run `python docs/gen_config.py > docs/configuration.md`"
    )

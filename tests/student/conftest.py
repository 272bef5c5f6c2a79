"""Fixtures for the student's tests: the student worker against the session's vLLM server, tiny
adapters that memorise known answers, and task/adapter rows."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from shared.db import session_scope
from shared.enums import AdapterStatus
from shared.prompts import generation_prompt
from shared.registry import artifact_hash
from tests.support import rows
from tests.support.lora import train_memorising_adapter
from tests.support.vllm import VllmServer, tiny_student_path, unload_adapters

DESCRIPTION = "Return the sum of a and b."
HEADER = "def add(a, b):"
PROMPT = generation_prompt(DESCRIPTION, HEADER)
BODY_V1 = "    return a + b\n"
BODY_V2 = "    total = b + a\n    return total\n"


@dataclass(frozen=True)
class TrainedAdapters:
    v1: Path  # memorises BODY_V1 for PROMPT
    v2: Path  # memorises BODY_V2 for PROMPT
    root: Path


@pytest.fixture(scope="session")
def trained_adapters(tmp_path_factory: pytest.TempPathFactory) -> TrainedAdapters:
    root = tmp_path_factory.mktemp("adapters")
    base = tiny_student_path()
    return TrainedAdapters(
        v1=train_memorising_adapter(base, [(PROMPT, BODY_V1)], root / "v1", seed=1),
        v2=train_memorising_adapter(base, [(PROMPT, BODY_V2)], root / "v2", seed=2),
        root=root,
    )


def register_adapter(path: Path, label: str, status: AdapterStatus = AdapterStatus.READY) -> int:
    """A registry row for ``path``, as the trainer writes it (unique name, content hash)."""
    with session_scope() as s:
        return rows.adapter(
            s,
            f"{label}-{uuid.uuid4().hex[:8]}",
            status,
            path=str(path),
            content_hash=artifact_hash(path),
            base_model=str(tiny_student_path()),
        ).id


def copy_adapter(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def add_task(
    description: str = DESCRIPTION,
    header: str = HEADER,
    entry_point: str = "add",
    seen: list[str] | None = None,
    hidden: list[str] | None = None,
    max_steps: int = 3,
) -> int:
    with session_scope() as s:
        return rows.task(
            s,
            description=description,
            header=header,
            entry_point=entry_point,
            seen_tests={"format": "asserts", "asserts": seen or ["assert add(1, 2) == 3"]},
            hidden_tests=({"format": "asserts", "asserts": hidden} if hidden is not None else None),
            max_steps=max_steps,
        ).id


def loaded_adapters(server: VllmServer) -> set[str]:
    data = httpx.get(f"{server.url}/v1/models", timeout=10).json()["data"]
    return {m["id"] for m in data if m.get("parent")}


@pytest.fixture
def clean_server(db, vllm_server: VllmServer) -> Iterator[VllmServer]:
    """The session's server with no adapter loaded, so tests do not see each other's. After
    ``db`` no queued message and no adapter row is left to make a worker load one again."""
    unload_adapters(vllm_server.url)
    yield vllm_server


@pytest.fixture(scope="session")
def _student_env(workers, vllm_server: VllmServer) -> dict[str, str]:
    # Restart once: a student worker another test started may not know the vLLM server.
    env = vllm_server.env | {"STUDENT_RETRY_FOR_S": "180"}
    workers.restart("student", env=env)
    return env


@pytest.fixture
def student(workers, _student_env: dict[str, str], clean_server: VllmServer, db):
    """A real student worker process talking to the session's vLLM server."""
    return workers.get("student", env=_student_env)


@pytest.fixture
def executor(workers, db):
    """The executor service's real worker (the sandbox), for flows that run attempts' code."""
    return workers.get("executor")

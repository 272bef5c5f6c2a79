"""Fixtures of the experiment tests: a vLLM server on the student the experiment measures, the
pipeline's real workers pointed at it, and the test process's own settings to match (the
experiment runs in the test process, as `persd experiment` runs beside a stack)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.teacher.settings import get_teacher_settings
from shared.student_settings import get_student_settings
from tests.e2e.support import TEACHER_REFERENCE
from tests.e2e.support import student_env as student_env_of
from tests.support.queues import purge_queues
from tests.support.vllm import VllmServer, unload_adapters
from tests.support.workers import WorkerPool


def student_path() -> Path:
    """The pretrained suite student of the small budget (a few minutes to build), built once
    and cached beside the tiny student for later sessions; a file lock serialises builders."""
    import fcntl

    from services.student.pretrain import (
        BUILDER_VERSION,
        PRESETS,
        Budget,
        build_pretrained_student,
        is_built,
    )
    from tests.support.vllm import model_cache_dir

    spec = PRESETS[Budget.SMALL]
    cache = model_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / f"suite-student-small-v{BUILDER_VERSION}"
    if is_built(target, spec):
        return target
    with open(cache / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return build_pretrained_student(target, spec)


@dataclass
class ExperimentStack:
    server: VllmServer
    workers: WorkerPool
    reports: Path

    def args(self, *argv: str) -> argparse.Namespace:
        """`persd experiment ARGV` as the CLI parses it, reports under the test's directory."""
        from services.cli import build_parser

        return build_parser().parse_args(
            ["experiment", "--no-progress", "--out", str(self.reports), *argv]
        )


@pytest.fixture(scope="package")
def student_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    server = VllmServer(
        student_path(),
        data_dir=tmp_path_factory.mktemp("vllm-exp"),
        log_dir=WorkerPool().log_dir,
        max_model_len=1024,  # the suite student's context
    )
    try:
        server.start()
        yield server
    finally:
        server.stop()


WORKER_ENV = {"STUDENT_MAX_TOKENS": "96", "TEACHER_EVAL_BENCHMARKS": "[]"}


@pytest.fixture
def student_env(student_server: VllmServer, monkeypatch) -> Iterator[dict[str, str]]:
    """This process's settings pointed at the experiment's student server."""
    env = student_env_of(student_server.env) | TEACHER_REFERENCE | WORKER_ENV
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_student_settings.cache_clear()
    get_teacher_settings.cache_clear()
    yield env
    monkeypatch.undo()
    get_student_settings.cache_clear()
    get_teacher_settings.cache_clear()


@pytest.fixture
def stack(
    workers: WorkerPool, student_server: VllmServer, student_env, db, tmp_path
) -> Iterator[ExperimentStack]:
    unload_adapters(student_server.url)
    for service in ("student", "executor", "teacher"):
        workers.restart(service, student_env)
    yield ExperimentStack(student_server, workers, tmp_path / "reports")
    workers.stop_all()
    purge_queues()

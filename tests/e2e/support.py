"""Pieces the end-to-end tests share: the tasks, the worker settings that make the tiny student
deterministic and trainable in seconds, a real Celery beat process, and the checks that every
task finished and every validated example exists exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from services.teacher.identity import split_for, task_key
from shared.db import session_scope
from shared.enums import ExampleVariant, Split, TaskStatus, ValidationOutcome
from shared.models import Refinement, Task, TrainingExample
from shared.status import FINAL
from tests.trainer.support import SET_A, SET_B, Spec, suite

ROOT = Path(__file__).resolve().parents[2]
# The teacher's default share; with it, two of the tasks below land on the held-out split (the
# gate's data) and twelve on the training split.
HELDOUT_PERCENT = 10
TASKS: list[Spec] = SET_A + SET_B
# Every example variant the teacher stores for one validated refinement.
VARIANTS = (ExampleVariant.PERSD, ExampleVariant.PERSD_REFINE, ExampleVariant.STAND)


def split_of(spec: Spec) -> Split:
    return split_for(task_key(spec.description, spec.header), HELDOUT_PERCENT)


def payload(spec: Spec, *, max_steps: int = 1, reference: bool = True) -> dict[str, Any]:
    """A TaskIn as a client sends it. One step by default: the random student fails its first
    answer anyway, and repairs would only cost generation time."""
    body: dict[str, Any] = {
        "description": spec.description,
        "header": spec.header,
        "seen_tests": suite(spec),
        "source_dataset": "e2e",
        "source_id": spec.entry_point,
        "max_steps": max_steps,
    }
    if reference:
        body["reference_solution"] = f"{spec.header}\n{spec.body}"
    return body


def student_env(vllm_env: dict[str, str]) -> dict[str, str]:
    # Greedy decoding: a memorised answer comes back byte for byte. 64 tokens hold the longest
    # body below; the random base model's nonsense stops there too.
    return vllm_env | {
        "STUDENT_TEMPERATURE": "0",
        "STUDENT_MAX_TOKENS": "64",
        "STUDENT_RETRY_FOR_S": "180",
    }


TEACHER_REFERENCE = {
    "TEACHER_BACKEND": "reference",
    "TEACHER_HELDOUT_PERCENT": str(HELDOUT_PERCENT),
}


def reconciler_env(interval_s: float, deadline_s: float) -> dict[str, str]:
    return {"RECONCILER_INTERVAL_S": str(interval_s), "RECONCILER_DEADLINE_S": str(deadline_s)}


class Beat:
    """``persd beat``, the production command, as a process of its own."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.log_path = log_dir / f"beat-{os.getpid()}-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "beat"],
            cwd=ROOT,
            env=os.environ | env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=20)
        self._log.close()


def statuses(task_ids: Iterable[int]) -> dict[int, TaskStatus]:
    ids = list(task_ids)
    with session_scope() as s:
        rows = s.execute(select(Task.id, Task.status).where(Task.id.in_(ids))).all()
    return dict(rows)


def all_final(task_ids: Iterable[int]) -> dict[int, TaskStatus] | None:
    found = statuses(task_ids)
    return found if all(status in FINAL for status in found.values()) else None


def example_ledger() -> dict[int, dict[ExampleVariant, int]]:
    """Training examples per task and variant."""
    with session_scope() as s:
        rows = s.execute(
            select(TrainingExample.task_id, TrainingExample.variant, func.count()).group_by(
                TrainingExample.task_id, TrainingExample.variant
            )
        ).all()
    ledger: dict[int, dict[ExampleVariant, int]] = {}
    for task_id, variant, count in rows:
        ledger.setdefault(task_id, {})[variant] = count
    return ledger


def passed_refinements() -> dict[int, int]:
    """Validated refinements per task."""
    with session_scope() as s:
        rows = s.execute(
            select(Refinement.task_id, func.count())
            .where(Refinement.validation == ValidationOutcome.PASSED)
            .group_by(Refinement.task_id)
        ).all()
    return dict(rows)


def assert_examples_exact(task_ids: Iterable[int]) -> None:
    """Each refined task has exactly one validated refinement and one example of each variant;
    no other task has either: nothing lost, nothing duplicated."""
    final = statuses(task_ids)
    refined = {t for t, status in final.items() if status is TaskStatus.REFINED}
    assert passed_refinements() == dict.fromkeys(refined, 1)
    assert example_ledger() == {t: dict.fromkeys(VARIANTS, 1) for t in refined}

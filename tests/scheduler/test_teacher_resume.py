"""The scheduler worker runs the teacher's resume sweep: a task waiting for a teacher moves on
once one can answer it, exactly once however often the sweep runs; ``persd teacher resume``
still sweeps by hand."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from sqlalchemy import update

from services.teacher import flow
from shared.db import session_scope
from shared.enums import TaskStatus
from shared.models import Task
from shared.queues import SCHEDULER_TEACHER_RESUME, Queue
from shared.schemas.messages import RefineRequest, TeacherResumeReply, TeacherResumeRequest
from tests.scheduler.support import queued
from tests.support.workers import ROOT
from tests.teacher import support as t

# The test environment has no key and no endpoint: only a task's own reference solution can
# answer (the `reference` teacher).
NO_TEACHER = {"TEACHER_BACKEND": "auto"}


def sweep() -> TeacherResumeReply:
    return SCHEDULER_TEACHER_RESUME.send(TeacherResumeRequest()).get(timeout=30)


def test_the_scheduler_worker_resumes_a_waiting_task_once(scheduler) -> None:
    seeded = t.seed_failed_task(reference=None)
    parked = flow.refine(RefineRequest(attempt_id=seeded.attempt_id), t.deps())
    assert parked.task_status is TaskStatus.NEEDS_TEACHER
    scheduler(NO_TEACHER)

    assert sweep() == TeacherResumeReply(resumed=[], waiting=[seeded.task_id])
    assert t.task_row(seeded.task_id).status is TaskStatus.NEEDS_TEACHER

    # Now a teacher can answer it: the task's reference solution.
    with session_scope() as s:
        s.execute(
            update(Task).where(Task.id == seeded.task_id).values(reference_solution=t.REFERENCE)
        )
    assert sweep() == TeacherResumeReply(resumed=[seeded.task_id], waiting=[])
    assert t.task_row(seeded.task_id).status is TaskStatus.REFINING
    [sent] = queued(Queue.TEACHER)
    assert sent.task == "teacher.refine"
    assert RefineRequest.model_validate(sent.args[0]) == RefineRequest(
        attempt_id=seeded.attempt_id, round=1
    )
    # A second sweep (a redelivered message, an overlapping one) finds nothing waiting.
    assert sweep() == TeacherResumeReply(resumed=[], waiting=[])
    assert len(queued(Queue.TEACHER)) == 1


def test_persd_teacher_resume_sweeps_by_hand(scheduler) -> None:
    seeded = t.seed_failed_task(reference=None)
    flow.refine(RefineRequest(attempt_id=seeded.attempt_id), t.deps())
    with session_scope() as s:
        s.execute(
            update(Task).where(Task.id == seeded.task_id).values(reference_solution=t.REFERENCE)
        )
    proc = subprocess.run(
        [sys.executable, "-m", "services.cli", "teacher", "resume"],
        cwd=ROOT,
        env=os.environ | NO_TEACHER,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"resumed": [seeded.task_id], "waiting": []}
    assert t.task_row(seeded.task_id).status is TaskStatus.REFINING

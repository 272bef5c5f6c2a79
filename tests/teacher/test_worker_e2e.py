"""End to end through the queues with real worker processes and no API key: teacher.refine ->
executor.run (real sandbox) -> teacher.validated. The reference teacher yields validated
examples of every format; replayed replies show guards rejecting through the whole pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.teacher.identity import task_key
from shared.enums import ExampleVariant, RejectionReason, TaskStatus, ValidationOutcome
from shared.queues import TEACHER_REFINE
from shared.schemas.messages import RefineReply, RefineRequest
from tests.teacher import support as t

pytestmark = pytest.mark.usefixtures("restore_teacher_worker")

EXIT_TASK = "Return the number of items in xs."
HARDCODE_TASK = "Return the largest number in xs."


def _offline_teacher(workers, tmp_path: Path):
    replay = tmp_path / "replay.jsonl"
    rows = [
        {
            "task_key": task_key(EXIT_TASK, "def count(xs):"),
            "reply": "```python\ndef count(xs):\n"
            "    getattr(__import__('o' + 's'), '_ex' + 'it')(3)\n```",
        },
        {
            "task_key": task_key(HARDCODE_TASK, "def largest(xs):"),
            "reply": "```python\ndef largest(xs):\n    if xs == [3, 9, 4]:\n        return 9\n"
            "    return xs[0]\n```",
        },
    ]
    replay.write_text("".join(json.dumps(r) + "\n" for r in rows))
    workers.get("executor")
    return workers.restart(
        "teacher",
        env={
            "TEACHER_BACKEND": "auto",
            "TEACHER_REPLAY_FILE": str(replay),
        },
    )


def test_reference_teacher_end_to_end(db, workers, tmp_path: Path) -> None:
    _offline_teacher(workers, tmp_path)
    seeded = t.seed_failed_task()
    first = TEACHER_REFINE.send(RefineRequest(attempt_id=seeded.attempt_id)).get(timeout=60)
    assert (first.validation, first.task_status) == (
        ValidationOutcome.PENDING,
        TaskStatus.REFINING,
    )
    assert t.wait_status(seeded.task_id, {TaskStatus.REFINED}) is TaskStatus.REFINED
    [ref] = t.refinements(seeded.task_id)
    assert (ref.validation, ref.teacher_backend, ref.code) == (
        ValidationOutcome.PASSED,
        "reference",
        t.REFERENCE,
    )
    task = t.task_row(seeded.task_id)
    assert (task.answer_code, task.answer_source) == (t.REFERENCE, "teacher")
    rows = {(e.variant, e.input, e.target) for e in t.examples()}
    assert rows == {
        (ExampleVariant.PERSD, t.GENERATION, t.BODY),
        (ExampleVariant.PERSD_REFINE, t.REFINE, t.BODY),
        (ExampleVariant.STAND, t.GENERATION, t.BODY),
    }
    # Redelivery after the fact: the same answer, nothing new.
    again = TEACHER_REFINE.send(RefineRequest(attempt_id=seeded.attempt_id)).get(timeout=60)
    assert again == RefineReply(
        refinement_id=ref.id, validation=ValidationOutcome.PASSED, task_status=TaskStatus.REFINED
    )
    assert len(t.refinements(seeded.task_id)) == 1 and len(t.examples()) == 3


def test_guards_reject_through_the_pipeline(db, workers, tmp_path: Path) -> None:
    _offline_teacher(workers, tmp_path)
    exits = t.seed_failed_task(
        description=EXIT_TASK,
        header="def count(xs):",
        entry_point="count",
        seen_tests={"format": "asserts", "asserts": ["assert count([1, 2]) == 2"]},
        reference=None,
        attempt_code="def count(xs):\n    return 0\n",
    )
    hardcodes = t.seed_failed_task(
        description=HARDCODE_TASK,
        header="def largest(xs):",
        entry_point="largest",
        seen_tests={"format": "asserts", "asserts": ["assert largest([3, 9, 4]) == 9"]},
        reference=None,
        attempt_code="def largest(xs):\n    return xs[0]\n",
    )
    for seeded in (exits, hardcodes):
        TEACHER_REFINE.send(RefineRequest(attempt_id=seeded.attempt_id))
    for seeded in (exits, hardcodes):
        assert t.wait_status(seeded.task_id, {TaskStatus.UNREFINABLE}) is TaskStatus.UNREFINABLE
    [exited] = t.refinements(exits.task_id)
    assert (exited.rejection_reason, exited.rejection_detail) == (
        RejectionReason.EARLY_EXIT,
        "the program exited before the tests finished: SystemExit: the program exited"
        " (status 3) before the tests finished",
    )
    [cheat] = t.refinements(hardcodes.task_id)
    assert (cheat.rejection_reason, cheat.rejection_detail) == (
        RejectionReason.HARDCODES_EXPECTED,
        "branches on the seen test input largest([3, 9, 4]) and returns its expected value 9",
    )
    assert t.examples() == []

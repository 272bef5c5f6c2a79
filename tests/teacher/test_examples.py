"""Validated refinements become training examples in the method's formats, deduplicated, with a
deterministic held-out split; benchmark tasks never do.

Here the flow's functions are called in-process and the refinement is run in the real sandbox
through the executor's in-process API; test_worker_e2e.py runs the same path through the queues
and real worker processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from services.teacher import examples, flow
from services.teacher.identity import split_for, task_key
from shared.db import session_scope
from shared.enums import ExampleVariant, Split, TaskStatus, ValidationOutcome
from shared.schemas.messages import ExecutedNotice, RefineReply, RefineRequest
from tests.teacher import support as t

pytestmark = pytest.mark.usefixtures("quiet_pipeline")

GENERATION, REFINE, BODY = t.GENERATION, t.REFINE, t.BODY


def _refine_and_pass(seeded: t.Seeded, deps: flow.Deps) -> RefineReply:
    pending = flow.refine(RefineRequest(attempt_id=seeded.attempt_id), deps)
    assert pending.validation is ValidationOutcome.PENDING
    assert pending.task_status is TaskStatus.REFINING
    execution_id = t.execute_refinement(pending.refinement_id)
    return flow.validated(ExecutedNotice(execution_id=execution_id), deps)


def test_reference_teacher_yields_all_formats_exactly(db) -> None:
    seeded = t.seed_failed_task()
    deps = t.deps()  # no key, the task has a reference: the reference teacher answers
    got = _refine_and_pass(seeded, deps)

    [ref] = t.refinements(seeded.task_id)
    assert got == RefineReply(
        refinement_id=ref.id, validation=ValidationOutcome.PASSED, task_status=TaskStatus.REFINED
    )
    assert (ref.teacher_backend, ref.teacher_model) == ("reference", "reference")
    assert ref.reply == "```python\n" + t.REFERENCE.rstrip() + "\n```"
    assert ref.code == t.REFERENCE
    assert ref.prompt[1] == {"role": "assistant", "content": ref.reply}
    assert f"Error from the unit tests:\n{t.FEEDBACK}\n\nRules:" in ref.prompt[2]["content"]
    task = t.task_row(seeded.task_id)
    assert (task.status, task.answer_code, task.answer_source) == (
        TaskStatus.REFINED,
        t.REFERENCE,
        "teacher",
    )
    assert task.status_reason == f"refinement {ref.id} (round 1) passed the seen tests"

    rows = {(e.variant, e.input, e.target, e.split, e.refinement_id) for e in t.examples()}
    split = split_for(task_key(t.DESCRIPTION, t.HEADER), 10)
    assert split is Split.TRAIN
    assert rows == {
        (ExampleVariant.PERSD, GENERATION, BODY, split, ref.id),
        (ExampleVariant.PERSD_REFINE, REFINE, BODY, split, ref.id),
        # StanD from the task's reference: not tied to the refinement.
        (ExampleVariant.STAND, GENERATION, BODY, split, None),
    }
    # Redelivered notice: same reply, no new rows.
    execution_id = _seen_execution_of(ref.id)
    assert flow.validated(ExecutedNotice(execution_id=execution_id), deps) == got
    assert len(t.examples()) == 3


def _seen_execution_of(refinement_id: int) -> int:
    from sqlalchemy import select

    from shared.models import Execution

    with session_scope() as s:
        return s.scalars(select(Execution.id).where(Execution.refinement_id == refinement_id)).one()


def test_teacher_program_is_reshaped_for_the_student_and_examples_deduplicated(
    db, tmp_path: Path
) -> None:
    reply = (
        "```python\nimport math\n\ndef sum_squares(xs):\n    return sum(math.pow(x, 2) for x in"
        " xs)\n\nprint(sum_squares([1, 2]))\n```"
    )
    replay = tmp_path / "replay.jsonl"
    replay.write_text(
        json.dumps({"task_key": task_key(t.DESCRIPTION, t.HEADER), "reply": reply}) + "\n"
    )
    deps = t.deps(backend="replay", replay_file=replay, heldout_percent=100)
    first = t.seed_failed_task(reference=None)
    _refine_and_pass(first, deps)
    body = "    import math\n    return sum(math.pow(x, 2) for x in xs)\n"
    [ref] = t.refinements(first.task_id)
    assert ref.code == "def sum_squares(xs):\n" + body  # what the executor validated
    got = {(e.variant, e.input, e.target, e.split) for e in t.examples()}
    assert got == {
        (ExampleVariant.PERSD, GENERATION, body, Split.HELDOUT),
        (ExampleVariant.PERSD_REFINE, REFINE, body, Split.HELDOUT),
        # No reference: StanD learns the validated teacher solution.
        (ExampleVariant.STAND, GENERATION, body, Split.HELDOUT),
    }
    # The same task submitted again, failed the same way, refined the same way: no duplicates.
    second = t.seed_failed_task(reference=None)
    _refine_and_pass(second, deps)
    assert t.task_row(second.task_id).status is TaskStatus.REFINED
    assert len(t.examples()) == 3


def test_benchmark_tasks_are_refined_but_never_become_examples(db) -> None:
    seeded = t.seed_failed_task(
        description="Check if in given list of numbers, are any two numbers closer to each other"
        " than given threshold.",
        header="def has_close_elements(numbers, threshold):",
        entry_point="has_close_elements",
        seen_tests={"format": "asserts", "asserts": ["assert has_close_elements([1.0, 2.0], 1.5)"]},
        hidden_tests=None,
        reference="    return any(abs(a - b) < threshold for i, a in enumerate(numbers)"
        " for b in numbers[i + 1:])\n",
        attempt_code="def has_close_elements(numbers, threshold):\n    return False\n",
    )
    got = _refine_and_pass(seeded, t.deps())
    assert got.task_status is TaskStatus.REFINED
    task = t.task_row(seeded.task_id)
    assert task.benchmark_match == "humaneval:HumanEval/0"
    assert task.answer_source == "teacher"
    assert t.examples() == []
    # With HumanEval no longer an evaluation benchmark, the flag no longer excludes the task.
    with session_scope() as s:
        assert examples.build_stand(s, t.settings(eval_benchmarks=[])) == 1


def test_stand_covers_every_task_with_a_reference(db) -> None:
    t.seed_failed_task()  # failed, not refined yet
    other = t.seed_failed_task(
        description="Return the product of a and b.",
        header="def mul(a, b):",
        entry_point="mul",
        seen_tests={"format": "asserts", "asserts": ["assert mul(2, 3) == 6"]},
        reference="def mul(a, b):\n    return a * b\n",
        attempt_code="def mul(a, b):\n    return a + b\n",
    )
    t.seed_failed_task(description="No reference here.", reference=None)
    with session_scope() as s:
        assert examples.build_stand(s, t.settings()) == 2
    with session_scope() as s:
        assert examples.build_stand(s, t.settings()) == 0  # idempotent
    stand = {(e.task_id, e.input, e.target) for e in t.examples()}
    assert (
        other.task_id,
        "# Return the product of a and b.\ndef mul(a, b):\n",
        "    return a * b\n",
    ) in stand
    assert len(stand) == 2


def test_split_is_deterministic_by_task_text() -> None:
    key = task_key(t.DESCRIPTION, t.HEADER)
    assert key == task_key("  return THE sum of the squares of the numbers in xs ", t.HEADER)
    assert split_for(key, 10) is Split.TRAIN and split_for(key, 87) is Split.HELDOUT
    keys = [task_key(f"task {i}", "def f(x):") for i in range(1000)]
    held = sum(split_for(k, 10) is Split.HELDOUT for k in keys)
    assert 70 <= held <= 130  # about a tenth, and the same on every run
    assert held == sum(split_for(k, 10) is Split.HELDOUT for k in keys)


def test_export_writes_hf_compatible_jsonl(db, tmp_path: Path, repo_root: Path) -> None:
    _refine_and_pass(t.seed_failed_task(), t.deps())
    out = tmp_path / "out" / "combined.jsonl"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.cli",
            "export",
            "--out",
            str(out),
            "--variant",
            "combined",
            "--split",
            "train",
        ],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"wrote 2 examples to {out}\n"
    assert "export combined/train: 100%" in proc.stderr  # the progress bar
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["variant"], r["prompt"], r["completion"], r["split"]) for r in lines] == [
        ("persd", GENERATION, BODY, "train"),
        ("persd_refine", REFINE, BODY, "train"),
    ]
    assert all(
        list(r) == ["prompt", "completion", "variant", "split", "task_id", "example_id"]
        for r in lines
    )
    stand = tmp_path / "stand.jsonl"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.cli",
            "export",
            "--out",
            str(stand),
            "--variant",
            "stand",
            "--no-progress",
        ],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(x)["completion"] for x in stand.read_text().splitlines()] == [BODY]
    assert proc.stderr == ""

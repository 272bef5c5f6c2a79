"""The retention tests' world: tasks with known answers, an adapter that memorised some of
them, and the rows that make each task a lesson, an ability or a probe.

The tiny student is a random initialisation and passes none of these tasks; the adapter
answers exactly the KNOWN ones. So every figure below is known before anything is measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shared.db import session_scope
from shared.enums import AdapterStatus, ExecutionOutcome, RetentionKind, Split
from shared.prompts import generation_prompt
from shared.registry import artifact_hash
from shared.schemas.retention import SetFigures
from tests.support import rows
from tests.support.lora import train_memorising_adapter
from tests.trainer.support import SET_A, Spec, suite

LESSONS = SET_A[0:2]  # trained on, known
ABILITIES = [SET_A[2], SET_A[5]]  # passed at step 1 once; the adapter knows the first only
PROBES = [SET_A[3], SET_A[4]]  # held out; the adapter knows the first only
KNOWN = [*LESSONS, SET_A[2], SET_A[3]]


def train_known(base_model: Path, out_dir: Path) -> Path:
    pairs = [(generation_prompt(s.description, s.header), s.body) for s in KNOWN]
    return train_memorising_adapter(base_model, pairs, out_dir)


@dataclass(frozen=True)
class World:
    adapter_id: int
    adapter_name: str
    path: str
    tasks: dict[str, int]  # entry point -> task id


def _task(s, spec: Spec):
    return rows.task(
        s,
        description=spec.description,
        header=spec.header,
        entry_point=spec.entry_point,
        seen_tests=suite(spec),
        hidden_tests=suite(spec),
    )


def seed_world(adapter_path: Path, base_model: Path) -> World:
    """The adapter as a ready version that a finished run trained on the lessons, the
    abilities' passing first attempts, and the held-out probes."""
    with session_scope() as s:
        version = rows.adapter(
            s,
            "persd-known",
            AdapterStatus.READY,
            path=str(adapter_path),
            content_hash=artifact_hash(adapter_path),
            base_model=str(base_model),
        )
        tasks = {}
        last = 0
        for spec in LESSONS:
            task = _task(s, spec)
            wrong = rows.attempt(s, task, code=f"{spec.header}\n{spec.wrong}")
            fix = rows.refinement(s, wrong, code=f"{spec.header}\n{spec.body}")
            last = rows.example(s, task, refinement_row=fix, target=spec.body).id
            tasks[spec.entry_point] = task.id
        rows.training_run(s, adapter_id=version.id, examples_through_id=last)
        for spec in ABILITIES:
            task = _task(s, spec)
            rows.attempt(
                s, task, code=f"{spec.header}\n{spec.body}", outcome=ExecutionOutcome.PASSED
            )
            tasks[spec.entry_point] = task.id
        for spec in PROBES:
            task = _task(s, spec)
            rows.example(s, task, Split.HELDOUT, target=spec.body)
            tasks[spec.entry_point] = task.id
        return World(version.id, version.name, str(adapter_path), tasks)


def figures(lessons: int, abilities: int, probes: int) -> list[SetFigures]:
    """A measurement's figures on the world's three sets of two tasks each."""
    return [
        SetFigures(kind=RetentionKind.LESSONS, tasks=2, passed=lessons, pass_at_1=lessons / 2),
        SetFigures(
            kind=RetentionKind.ABILITIES, tasks=2, passed=abilities, pass_at_1=abilities / 2
        ),
        SetFigures(kind=RetentionKind.PROBES, tasks=2, passed=probes, pass_at_1=probes / 2),
    ]

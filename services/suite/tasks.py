"""One suite task: a pipeline of operations rendered as description, header, body and tests."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from services.suite.grammar import FAMILIES, Family, Op
from services.suite.hashing import content_hash

if TYPE_CHECKING:
    from services.student.datasets import EvalTask

SOURCE_DATASET = "persd-suite"
SEEN_CASES = 3
HIDDEN_CASES = 6  # hidden tests are all cases, the seen ones included (as MBPP's are)
MAX_REPR = 80  # keeps test values, and so feedback, short


class Pool(StrEnum):
    PRETRAIN = "pretrain"  # the offline student's pretraining data
    DISTILL = "distill"  # the traffic that goes through the loop
    HELDOUT = "heldout"  # never trained on; reported figures
    RETENTION = "retention"  # pretraining-like tasks, to measure forgetting
    VALIDATION = "validation"  # held-out-like, for tuning; never reported as a result


Step = tuple[Op, tuple[Any, ...]]


@dataclass(frozen=True)
class SuiteTask:
    task_id: str  # "suite-s0/heldout/00017"
    pool: Pool
    family: Family
    composition: str  # "list:add|even|sum": the operations, without constants
    signature: str  # "list:add(3)|even|sum": operations and constants
    lesson: bool  # uses an operation absent from pretraining
    description: str
    header: str
    entry_point: str
    seen_tests: dict[str, Any] = field(hash=False)
    hidden_tests: dict[str, Any] = field(hash=False)
    reference_solution: str
    content_hash: str

    @property
    def body(self) -> str:
        """The reference body: what the student should write after the header."""
        return self.reference_solution[len(self.header) + 1 :]

    def to_eval_task(self) -> EvalTask:
        from services.student.datasets import EvalTask

        return EvalTask(
            task_id=self.task_id,
            description=self.description,
            header=self.header,
            entry_point=self.entry_point,
            seen_tests=self.seen_tests,
            hidden_tests=self.hidden_tests,
            extra={
                "pool": self.pool.value,
                "family": self.family.value,
                "signature": self.signature,
                "lesson": self.lesson,
            },
        )

    def to_submission(self) -> dict[str, Any]:
        """A body for ``POST /v1/tasks`` (the API's TaskIn)."""
        return {
            "description": self.description,
            "header": self.header,
            "entry_point": self.entry_point,
            "seen_tests": self.seen_tests,
            "hidden_tests": self.hidden_tests,
            "reference_solution": self.reference_solution,
            "source_dataset": SOURCE_DATASET,
            "source_id": self.task_id,
            "idempotency_key": f"{SOURCE_DATASET}:{self.content_hash[:40]}",
        }


def composition_of(family: Family, steps: list[Step]) -> str:
    return f"{family.value}:" + "|".join(op.name for op, _ in steps)


def signature_of(family: Family, steps: list[Step]) -> str:
    parts = [op.name + (f"({','.join(map(repr, c))})" if c else "") for op, c in steps]
    return f"{family.value}:" + "|".join(parts)


def _sentence(steps: list[Step]) -> str:
    phrases = [op.render_phrase(c) for op, c in steps]
    *head, last = phrases
    text = ", ".join(head) + f", then {last}." if head else f"{last}."
    return text[0].upper() + text[1:]


def _program(family: Family, steps: list[Step]) -> tuple[str, str]:
    spec = FAMILIES[family]
    *body, (final, final_consts) = steps
    header = spec.header(final.returns)
    lines = [f"    {spec.var} = {op.render_code(c)}" for op, c in body]
    lines.append(f"    return {final.render_code(final_consts)}")
    return header, header + "\n" + "\n".join(lines) + "\n"


def _run(steps: list[Step], value: Any) -> Any:
    for op, consts in steps:
        value = op.fn(value, *consts)
    return value


def _inputs(family: Family, steps: list[Step], rng: random.Random) -> list[Any]:
    """Test inputs, biased towards the task's own constants so filters and replaces bite."""
    consts = [c for _, cs in steps for c in cs]
    ints = [c for c in consts if isinstance(c, int)] or [0]
    chars = [ch for c in consts if isinstance(c, str) for ch in c] or ["a"]
    out: list[Any] = []
    for _ in range(HIDDEN_CASES):
        if family is Family.LIST:
            out.append(
                [
                    rng.choice(ints) if rng.random() < 0.25 else rng.randint(-9, 20)
                    for _ in range(rng.randint(0, 7))
                ]
            )
        elif family is Family.STRING:
            alphabet = "abcdefghijklmnopqrstuvwxyz"
            chars_out = []
            for _ in range(rng.randint(0, 10)):
                r = rng.random()
                if r < 0.3:
                    chars_out.append(rng.choice(chars))
                elif r < 0.4:
                    chars_out.append(" ")
                elif r < 0.55:
                    chars_out.append(rng.choice(alphabet).upper())
                else:
                    chars_out.append(rng.choice(alphabet))
            out.append("".join(chars_out))
        else:
            out.append(rng.randint(-40, 200))
    return out


def _discriminating(steps: list[Step], inputs: list[Any], outputs: list[Any]) -> bool:
    """Every step changes some output (so dropping any one is caught), outputs vary, and values
    stay short."""
    if len({repr(o) for o in outputs}) < 2:
        return False
    if any(len(repr(v)) > MAX_REPR for v in [*inputs, *outputs]):
        return False
    for i in range(len(steps) - 1):
        without = steps[:i] + steps[i + 1 :]
        if [_run(without, x) for x in inputs] == outputs:
            return False
    return True


def build_task(
    task_id: str, pool: Pool, family: Family, steps: list[Step], rng: random.Random, tries: int = 4
) -> SuiteTask | None:
    """The task for ``steps``, or None when no drawn inputs tell every step apart."""
    for _ in range(tries):
        inputs = _inputs(family, steps, rng)
        outputs = [_run(steps, x) for x in inputs]
        if _discriminating(steps, inputs, outputs):
            break
    else:
        return None
    spec = FAMILIES[family]
    header, program = _program(family, steps)
    description = _sentence(steps)
    cases = [
        {"call": f"{spec.entry_point}({x!r})", "expected": repr(y)}
        for x, y in zip(inputs, outputs, strict=True)
    ]
    return SuiteTask(
        task_id=task_id,
        pool=pool,
        family=family,
        composition=composition_of(family, steps),
        signature=signature_of(family, steps),
        lesson=any(op.lesson for op, _ in steps),
        description=description,
        header=header,
        entry_point=spec.entry_point,
        seen_tests={"format": "io", "cases": cases[:SEEN_CASES]},
        hidden_tests={"format": "io", "cases": cases},
        reference_solution=program,
        content_hash=content_hash(description, header),
    )

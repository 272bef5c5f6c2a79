"""Rows and configs for the trainer's tests: coding tasks with tests, the training examples the
teacher would have stored for them, and a training config that makes the tiny student memorise
its examples in a few seconds."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.db import session_scope
from shared.enums import ExampleVariant, Split
from shared.models import Task, TrainingExample
from shared.prompts import generation_prompt, refine_prompt
from tests.support.vllm import tiny_student_path

# All seven projections: with a frozen, randomly initialised head the tiny model needs the
# capacity to move its last hidden state far enough for greedy decoding to follow the targets.
ALL_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass(frozen=True)
class Spec:
    """A task, its correct body, and a wrong attempt (what the student got wrong)."""

    description: str
    header: str
    body: str
    wrong: str
    asserts: tuple[str, ...]

    @property
    def entry_point(self) -> str:
        return self.header.split("def ", 1)[1].split("(", 1)[0]


SET_A = [
    Spec(
        "Return the square of x.",
        "def square(x):",
        "    return x * x\n",
        "    return x + x\n",
        ("assert square(3) == 9", "assert square(-2) == 4"),
    ),
    Spec(
        "Return the sum of a and b.",
        "def add(a, b):",
        "    return a + b\n",
        "    return a - b\n",
        ("assert add(2, 3) == 5", "assert add(-1, 1) == 0"),
    ),
    Spec(
        "Return True if n is even.",
        "def is_even(n):",
        "    return n % 2 == 0\n",
        "    return n % 2 == 1\n",
        ("assert is_even(4) is True", "assert is_even(7) is False"),
    ),
    Spec(
        "Return the largest element of xs.",
        "def largest(xs):",
        "    return max(xs)\n",
        "    return min(xs)\n",
        ("assert largest([3, 9, 2]) == 9",),
    ),
    Spec(
        "Return the string s reversed.",
        "def reverse(s):",
        "    return s[::-1]\n",
        "    return s\n",
        ("assert reverse('abc') == 'cba'",),
    ),
    Spec(
        "Return the factorial of n.",
        "def factorial(n):",
        "    result = 1\n    for i in range(2, n + 1):\n        result *= i\n    return result\n",
        "    return n\n",
        ("assert factorial(5) == 120", "assert factorial(0) == 1"),
    ),
    Spec(
        "Return the absolute difference of a and b.",
        "def distance(a, b):",
        "    return abs(a - b)\n",
        "    return a - b\n",
        ("assert distance(2, 7) == 5",),
    ),
    Spec(
        "Return s in upper case.",
        "def shout(s):",
        "    return s.upper()\n",
        "    return s.lower()\n",
        ("assert shout('hi') == 'HI'",),
    ),
    Spec(
        "Return the first element of xs, or None if xs is empty.",
        "def first(xs):",
        "    return xs[0] if xs else None\n",
        "    return xs[0]\n",
        ("assert first([4, 5]) == 4", "assert first([]) is None"),
    ),
    Spec(
        "Return the average of xs.",
        "def mean(xs):",
        "    return sum(xs) / len(xs)\n",
        "    return sum(xs)\n",
        ("assert mean([1, 2, 3]) == 2",),
    ),
]

SET_B = [
    Spec(
        "Return a list of the squares of xs.",
        "def squares(xs):",
        "    return [x * x for x in xs]\n",
        "    return xs\n",
        ("assert squares([1, 2, 3]) == [1, 4, 9]",),
    ),
    Spec(
        "Return the number of vowels in s.",
        "def count_vowels(s):",
        "    return sum(1 for c in s if c in 'aeiou')\n",
        "    return len(s)\n",
        ("assert count_vowels('banana') == 3",),
    ),
    Spec(
        "Return the last element of xs.",
        "def last(xs):",
        "    return xs[-1]\n",
        "    return xs[0]\n",
        ("assert last([1, 2, 3]) == 3",),
    ),
    Spec(
        "Return x plus one.",
        "def increment(x):",
        "    return x + 1\n",
        "    return x\n",
        ("assert increment(41) == 42",),
    ),
]


def suite(spec: Spec) -> dict[str, Any]:
    return {"format": "asserts", "asserts": list(spec.asserts)}


def feedback(spec: Spec) -> str:
    return f"AssertionError: {spec.asserts[0]}"


def add_task(spec: Spec, *, tag: str = "") -> int:
    with session_scope() as s:
        task = Task(
            description=spec.description,
            header=spec.header,
            entry_point=spec.entry_point,
            seen_tests=suite(spec),
            hidden_tests=suite(spec),
            source_dataset="trainer-tests",
            source_id=f"{spec.entry_point}{tag}",
        )
        s.add(task)
        s.flush()
        return task.id


def add_examples(
    spec: Spec,
    split: Split,
    variants: tuple[ExampleVariant, ...] = (ExampleVariant.PERSD,),
    *,
    tag: str = "",
    body: str | None = None,
) -> list[int]:
    """A task and the examples the teacher stores for a validated refinement of it."""
    task_id = add_task(spec, tag=tag)
    target = body or spec.body
    ids = []
    with session_scope() as s:
        for variant in variants:
            if variant == ExampleVariant.PERSD_REFINE:
                wrong = f"{spec.header}\n{spec.wrong}"
                prompt = refine_prompt(spec.description, spec.header, wrong, feedback(spec))
            else:
                prompt = generation_prompt(spec.description, spec.header)
            row = TrainingExample(
                variant=variant,
                input=prompt,
                target=target,
                task_id=task_id,
                split=split,
                content_hash=hashlib.sha256(
                    f"{variant}|{prompt}|{target}|{tag}|{split}".encode()
                ).hexdigest(),
            )
            s.add(row)
            s.flush()
            ids.append(row.id)
    return ids


def seed(specs: list[Spec], split: Split = Split.TRAIN, **kw: Any) -> list[int]:
    ids: list[int] = []
    for spec in specs:
        ids += add_examples(spec, split, **kw)
    return ids


def fast_settings(adapter_dir: Path, **overrides: Any) -> dict[str, Any]:
    """Trainer settings under which the tiny student memorises ~15 examples in seconds."""
    values: dict[str, Any] = {
        "base_model": str(tiny_student_path()),
        "adapter_dir": str(adapter_dir),
        "variant_mix": "persd",
        "init_from": "fresh",
        "lora_rank": 8,
        "lora_alpha": 16,
        "lora_dropout": 0.0,
        "lora_target_modules": ALL_MODULES,
        "learning_rate": 1e-2,
        "epochs": 80,
        "batch_size": 32,
        "max_length": 512,
        "lease_s": 6,
        "gate_max_new_tokens": 48,
        "promote_timeout_s": 120,
    }
    return values | overrides


def as_env(values: dict[str, Any]) -> dict[str, str]:
    """The same settings as TRAINER_* variables, for a worker process."""
    env = {}
    for key, value in values.items():
        if isinstance(value, list):
            value = ",".join(value)
        env[f"TRAINER_{key.upper()}"] = str(value)
    return env

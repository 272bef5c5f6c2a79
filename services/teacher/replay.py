"""Replay files: earlier teacher replies, one JSON object per line, answered again for free.

A row needs ``task_key`` (:func:`services.teacher.identity.task_key` of the task's description
and header) and ``reply`` (the teacher's raw text); ``round``, ``model`` and ``validation`` are
optional. ``persd teacher dump-refinements`` writes this format from the database, so a run with
a paid teacher can be replayed offline (tests, demos, re-training from scratch).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from threading import Lock
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.errors import ConfigError


class ReplayRow(BaseModel):
    model_config = ConfigDict(extra="ignore")
    task_key: str = Field(min_length=1)
    reply: str
    round: int = Field(1, ge=1)
    model: str = "unknown"
    validation: str | None = None


@dataclass(frozen=True)
class ReplayBook:
    rows: dict[str, list[ReplayRow]]

    def find(self, key: str, round_: int) -> ReplayRow | None:
        """The recorded reply for this task and round; a validated one wins when several
        were recorded, and round 1's answers a task that has no row for a later round."""
        rows = self.rows.get(key, [])
        if not rows:
            return None
        same_round = [r for r in rows if r.round == round_] or rows
        passed = [r for r in same_round if r.validation == "passed"]
        return (passed or same_round)[-1]


def parse(lines: Iterable[str], source: str) -> ReplayBook:
    rows: dict[str, list[ReplayRow]] = {}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = ReplayRow.model_validate_json(line)
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(str(p) for p in problem["loc"]) or "(row)"
            raise ConfigError(
                f"TEACHER_REPLAY_FILE: {source} line {n}: {where}: {problem['msg']}"
            ) from None
        rows.setdefault(row.task_key, []).append(row)
    return ReplayBook(rows)


_CACHE: dict[tuple[str, float], ReplayBook] = {}
_LOCK = Lock()


def load(path: Path) -> ReplayBook:
    """Parsed once per file version: an operator may append to the file while workers run."""
    try:
        stamp = (str(path), path.stat().st_mtime)
    except OSError as exc:
        raise ConfigError(f"TEACHER_REPLAY_FILE: cannot read {path}: {exc.strerror}") from None
    with _LOCK:
        if stamp not in _CACHE:
            with open(path) as fh:
                _CACHE[stamp] = parse(fh, str(path))
        return _CACHE[stamp]


def write(rows: Iterable[dict[str, Any]], path: Path) -> Iterator[int]:
    """Write rows as JSONL, yielding after each (for a progress bar)."""
    with open(path, "w") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            yield 1

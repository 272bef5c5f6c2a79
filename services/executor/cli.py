"""``persd execute IN.jsonl -o OUT.jsonl``: score programs in the sandbox, one per line.

Each input line is a JSON object: ``code``, ``tests`` (a test suite: ``{"format": "asserts",
"asserts": [...]}``, ``{"format": "check", "check": "def check(candidate): ..."}`` or
``{"format": "io", "cases": [{"call": ..., "expected": ...}]}``), ``entry_point``, and optionally
``timeout_s`` (per test) and ``id`` (copied to the output). Each output line is the input's ``id``
plus the :class:`~services.executor.schemas.ExecutionResult`, in input order.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from shared.errors import InvalidInput


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "execute",
        help="run programs against their tests in the sandbox (JSONL in, JSONL out)",
        description=__doc__.split("\n\n")[1],
    )
    p.add_argument("input", type=Path, help="JSONL file: one program and its tests per line")
    p.add_argument("-o", "--output", type=Path, required=True, help="JSONL file for the results")
    p.add_argument(
        "--workers", "-w", type=int, help="parallel sandbox slots (default EXECUTOR_SLOTS)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_execute)


def read_jobs(path: Path) -> list[tuple[Any, Any]]:
    """Parse and validate every line before anything runs: a bad line 9000 must not cost the
    first 8999 runs. Returns (id, Job) pairs."""
    from services.executor.schemas import Job

    if not path.is_file():
        raise InvalidInput(f"{path}: no such file")
    jobs = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise InvalidInput(f"{path} line {number}: not valid JSON: {exc}") from None
            if not isinstance(record, dict):
                raise InvalidInput(f"{path} line {number}: expected a JSON object")
            ident = record.pop("id", None)
            try:
                jobs.append((ident, Job.model_validate(record)))
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc']) or '(line)'}: {e['msg']}"
                    for e in exc.errors()
                )
                raise InvalidInput(f"{path} line {number}: {problems}") from None
    if not jobs:
        raise InvalidInput(f"{path}: no jobs")
    return jobs


def _execute(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from services.executor.api import ExecutorPool
    from services.executor.settings import get_executor_settings

    jobs = read_jobs(args.input)
    settings = get_executor_settings()
    workers = args.workers or settings.slots
    if workers < 1:
        raise InvalidInput("--workers must be at least 1")
    passed = 0
    with (
        ExecutorPool(workers=workers, settings=settings) as pool,
        tqdm(total=len(jobs), unit="prog", disable=args.no_progress, file=sys.stderr) as bar,
        args.output.open("w", encoding="utf-8") as out,
    ):
        results = pool.map((job for _, job in jobs), on_done=lambda _r: bar.update())
        for (ident, _job), result in zip(jobs, results, strict=True):
            passed += result.passed
            out.write(json.dumps({"id": ident, **result.model_dump(mode="json")}) + "\n")
    print(f"{passed}/{len(jobs)} passed; results in {args.output}", file=sys.stderr)
    return 0

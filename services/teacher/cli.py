"""Teacher commands: ``persd export`` and ``persd teacher {costs,resume,dump-refinements}``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# Kept literal so `persd --help` imports nothing heavy; export.VARIANTS/SPLITS match them.
VARIANT_CHOICES = ["all", "combined", "persd", "persd_refine", "stand"]
SPLIT_CHOICES = ["all", "heldout", "train"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="write training examples as JSONL (HF datasets / TRL prompt-completion)"
    )
    p.add_argument("--out", type=Path, required=True, help="destination .jsonl file")
    p.add_argument("--variant", choices=VARIANT_CHOICES, default="combined")
    p.add_argument("--split", choices=SPLIT_CHOICES, default="train")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_export)

    teacher = sub.add_parser("teacher", help="teacher maintenance commands")
    tsub = teacher.add_subparsers(dest="teacher_command", required=True, metavar="COMMAND")
    p = tsub.add_parser("costs", help="teacher spend as JSON: totals, per refinement, per lesson")
    p.set_defaults(handler=_costs)
    p = tsub.add_parser("resume", help="resume tasks waiting for budget or a teacher, once")
    p.set_defaults(handler=_resume)
    p = tsub.add_parser("dump-refinements", help="write refinements as a TEACHER_REPLAY_FILE")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--validated-only", action="store_true")
    p.set_defaults(handler=_dump)


def _export(args: argparse.Namespace) -> int:
    from services.teacher.export import export
    from services.teacher.settings import get_teacher_settings
    from shared.db import session_scope

    settings = get_teacher_settings()
    with session_scope() as session:
        n = export(
            session,
            settings,
            args.out,
            variant=args.variant,
            split=args.split,
            progress=not args.no_progress,
        )
    print(f"wrote {n} examples to {args.out}")
    return 0


def _costs(_args: argparse.Namespace) -> int:
    from services.teacher.costs import cost_summary
    from services.teacher.settings import get_teacher_settings
    from shared.db import session_scope

    with session_scope() as session:
        summary = cost_summary(session, get_teacher_settings())
    print(summary.model_dump_json(indent=2))
    return 0


def _resume(_args: argparse.Namespace) -> int:
    from services.teacher.flow import Deps
    from services.teacher.resume import resume_waiting

    result = resume_waiting(Deps.default())
    print(json.dumps({"resumed": result.resumed, "waiting": result.waiting}))
    return 0


def _dump(args: argparse.Namespace) -> int:
    from sqlalchemy import select
    from tqdm import tqdm

    from services.teacher.identity import task_key
    from services.teacher.replay import write
    from shared.db import session_scope
    from shared.enums import ValidationOutcome
    from shared.models import Refinement, Task

    with session_scope() as session:
        query = select(Refinement, Task).join(Task, Task.id == Refinement.task_id)
        if args.validated_only:
            query = query.where(Refinement.validation == ValidationOutcome.PASSED)
        rows = (
            {
                "task_key": task_key(task.description, task.header),
                "source_dataset": task.source_dataset,
                "source_id": task.source_id,
                "round": ref.round,
                "model": ref.teacher_model,
                "validation": ref.validation.value,
                "reply": ref.reply,
            }
            for ref, task in session.execute(query.order_by(Refinement.id))
        )
        n = sum(tqdm(write(rows, args.out), desc="dump", unit="row"))
    print(f"wrote {n} refinements to {args.out}")
    return 0

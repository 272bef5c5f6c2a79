"""``persd export``: training examples as JSONL that ``datasets.load_dataset("json", ...)`` and
TRL's SFT trainer read as a prompt-completion dataset (loss on the completion only).

Each line: ``{"prompt", "completion", "variant", "split", "task_id", "example_id"}``, the same
keys and types on every line. ``combined`` is PERsD plus PERsD-refine rows. The file is written
beside its destination and renamed into place, so a reader never sees half an export.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from tqdm import tqdm

from services.teacher import benchmarks
from services.teacher.examples import build_stand
from services.teacher.settings import TeacherSettings
from shared.enums import ExampleVariant, Split
from shared.models import Task, TrainingExample

VARIANTS: dict[str, tuple[ExampleVariant, ...]] = {
    "persd": (ExampleVariant.PERSD,),
    "persd_refine": (ExampleVariant.PERSD_REFINE,),
    "combined": (ExampleVariant.PERSD, ExampleVariant.PERSD_REFINE),
    "stand": (ExampleVariant.STAND,),
    "all": tuple(ExampleVariant),
}
SPLITS: dict[str, tuple[Split, ...]] = {
    "train": (Split.TRAIN,),
    "heldout": (Split.HELDOUT,),
    "all": tuple(Split),
}


def export(
    session: Session,
    settings: TeacherSettings,
    out: Path,
    *,
    variant: str = "combined",
    split: str = "train",
    progress: bool = True,
) -> int:
    """Write the selected examples to ``out``; returns the number of lines written."""
    variants, splits = VARIANTS[variant], SPLITS[split]
    if ExampleVariant.STAND in variants:
        build_stand(session, settings)  # StanD covers every task with a reference, so far
        session.flush()
    where = (TrainingExample.variant.in_(variants), TrainingExample.split.in_(splits))
    total = session.execute(
        select(func.count()).select_from(TrainingExample).where(*where)
    ).scalar_one()
    query = (
        select(TrainingExample, Task.benchmark_match)
        .join(Task, Task.id == TrainingExample.task_id)
        .where(*where)
        .order_by(TrainingExample.id)
        .execution_options(yield_per=1000)
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    written = 0
    try:
        with (
            os.fdopen(fd, "w") as fh,
            tqdm(
                total=total, desc=f"export {variant}/{split}", unit="ex", disable=not progress
            ) as bar,
        ):
            for example, match in session.execute(query):
                bar.update(1)
                # Benchmarks evaluated now may differ from those when the row was made.
                if benchmarks.excluded(match, settings.eval_benchmarks):
                    continue
                row = {
                    "prompt": example.input,
                    "completion": example.target,
                    "variant": example.variant.value,
                    "split": example.split.value,
                    "task_id": example.task_id,
                    "example_id": example.id,
                }
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                written += 1
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return written

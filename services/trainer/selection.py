"""Which stored examples a run trains on and which held-out data judges it.

Example ids are the clock: a run records the highest ``training_examples.id`` it saw
(``examples_through_id``); examples above it are "new" for the next trigger, and a run that
continues an adapter trains on the examples above that adapter's own run's mark.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.trainer.config import TrainerConfig
from services.trainer.encoding import Pair
from shared.enums import ExampleVariant, Split, TrainingRunStatus
from shared.models import Adapter, Task, TrainingExample, TrainingRun


@dataclass(frozen=True)
class Selection:
    pairs: list[Pair]  # the new examples, then the rehearsed ones
    through_id: int  # highest example id at selection time
    since_id: int  # only examples above this were new (0: all)
    parent_id: int | None  # adapter continued from, or None for a fresh adapter
    rehearsed: int = 0  # how many of ``pairs`` the parent had already learned

    @property
    def new(self) -> int:
        return len(self.pairs) - self.rehearsed


def high_water_mark(session: Session) -> int:
    return int(session.execute(select(func.coalesce(func.max(TrainingExample.id), 0))).scalar_one())


def trained_through(session: Session, adapter_id: int) -> int:
    """The example mark of the run that produced ``adapter_id`` (0 if it has no run: all examples
    are new to an adapter registered by hand)."""
    mark = session.execute(
        select(TrainingRun.examples_through_id)
        .where(TrainingRun.adapter_id == adapter_id)
        .order_by(TrainingRun.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    return int(mark or 0)


def _train_query(variants: tuple[ExampleVariant, ...], since_id: int, through_id: int):
    return (
        select(TrainingExample)
        .where(
            TrainingExample.split == Split.TRAIN,
            TrainingExample.variant.in_(variants),
            TrainingExample.id > since_id,
            TrainingExample.id <= through_id,
        )
        .order_by(TrainingExample.id)
    )


def select_training(session: Session, config: TrainerConfig, parent: Adapter | None) -> Selection:
    """The run's examples: everything of the mix (fresh), or what ``parent`` has not seen plus a
    rehearsal of what it has (up to ``rehearsal_examples``, sampled when there are more).

    Rehearsal because a LoRA adapter trained further on new examples alone drifts away from the
    earlier ones: measured on the tiny student, a run continued on 4 new tasks lost all 10 of its
    parent's lessons (6 of 10 when it rehearsed 4 of them), and the gate's retention guard
    refused it. The sample is drawn with the
    run's seed, so a rerun of the same run trains on the same examples."""
    through = high_water_mark(session)
    since = trained_through(session, parent.id) if parent is not None else 0
    rows = session.execute(_train_query(config.variants, since, through)).scalars().all()
    pairs = [Pair(r.input, r.target, r.id) for r in rows]
    rehearsed: list[Pair] = []
    if parent is not None and since and rows and config.rehearsal_examples:
        learned = session.execute(_train_query(config.variants, 0, since)).scalars().all()
        k = min(len(learned), config.rehearsal_examples)
        sample = sorted(random.Random(config.seed).sample(range(len(learned)), k))
        rehearsed = [Pair(learned[i].input, learned[i].target, learned[i].id) for i in sample]
    return Selection(
        pairs + rehearsed, through, since, parent.id if parent is not None else None, len(rehearsed)
    )


def count_new(session: Session, config: TrainerConfig, since_id: int) -> tuple[int, object]:
    """(number of new training examples of the mix above ``since_id``, oldest one's time)."""
    count, oldest = session.execute(
        select(func.count(TrainingExample.id), func.min(TrainingExample.created_at)).where(
            TrainingExample.split == Split.TRAIN,
            TrainingExample.variant.in_(config.variants),
            TrainingExample.id > since_id,
        )
    ).one()
    return int(count), oldest


def last_finished_run(session: Session) -> TrainingRun | None:
    """The latest run that trained and was judged (promoted or rejected): its mark is where
    "new examples" start. Failed runs taught nothing, so their examples stay new."""
    return session.execute(
        select(TrainingRun)
        .where(TrainingRun.status.in_([TrainingRunStatus.PROMOTED, TrainingRunStatus.REJECTED]))
        .order_by(TrainingRun.examples_through_id.desc(), TrainingRun.id.desc())
        .limit(1)
    ).scalar_one_or_none()


@dataclass(frozen=True)
class HeldoutTask:
    task_id: int
    description: str
    header: str
    entry_point: str
    tests: dict  # the suite that scores: hidden tests when the task has them, else seen


def heldout_tasks(session: Session, limit: int) -> list[HeldoutTask]:
    """Tasks on the held-out split (the teacher assigns splits by task hash), lowest id first."""
    ids = (
        select(TrainingExample.task_id)
        .where(TrainingExample.split == Split.HELDOUT)
        .distinct()
        .scalar_subquery()
    )
    rows = session.execute(
        select(Task).where(Task.id.in_(ids)).order_by(Task.id).limit(limit)
    ).scalars()
    return [
        HeldoutTask(t.id, t.description, t.header, t.entry_point, t.hidden_tests or t.seen_tests)
        for t in rows
    ]


def heldout_examples(
    session: Session, variants: tuple[ExampleVariant, ...], limit: int
) -> list[Pair]:
    """Held-out refinements in the formats the run trains, for the NLL comparison."""
    rows = session.execute(
        select(TrainingExample)
        .where(TrainingExample.split == Split.HELDOUT, TrainingExample.variant.in_(variants))
        .order_by(TrainingExample.id)
        .limit(limit)
    ).scalars()
    return [Pair(r.input, r.target, r.id) for r in rows]

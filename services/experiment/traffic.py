"""The distillation pool's one pass through the running pipeline, shared by every arm.

Tasks go in through the service function behind ``POST /v1/tasks`` (``serving.tasks.submit``)
with idempotency keys made of the experiment's name and each task's content hash, so a resumed
experiment finds the tasks it submitted instead of sending them again. The student worker
attempts them, the executor runs them, the teacher worker rectifies the failures into PERsD and
PERsD-refine examples; the experiment waits until every task settled.

StanD gets an answer for *every* task, failed or not: offline, the task's reference (the
teacher's ``build_stand``, the same rows the trainer's StanD mix reads); with an API teacher, the
experiment asks that teacher to solve each task (the teacher client, priced like every other
call) and keeps the answers that pass the seen tests, as StanD's data collection filters them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from decimal import Decimal

from sqlalchemy import select

from services.api.protocol.tasks import TaskIn
from services.api.serving.tasks import submit
from services.experiment.pools import PoolTask
from services.teacher import client as teacher_api
from services.teacher.costs import cost_of
from services.teacher.examples import build_stand
from services.teacher.prompt import fenced, solve_messages
from services.teacher.settings import TeacherSettings
from shared.db import session_scope
from shared.enums import TaskStatus
from shared.errors import PersdError
from shared.models import Attempt, Refinement, Task
from shared.prompts import extract_code
from shared.schemas.experiments import StandAnswer, TaskSpend, TeacherSpend, Traffic

log = logging.getLogger(__name__)

# Where a task stops moving without an operator: the pipeline's final statuses plus the two
# that wait for a teacher or budget.
SETTLED = frozenset(
    {
        TaskStatus.PASSED,
        TaskStatus.REFINED,
        TaskStatus.UNREFINABLE,
        TaskStatus.ERROR,
        TaskStatus.NEEDS_TEACHER,
        TaskStatus.BUDGET_EXHAUSTED,
    }
)
BATCH = 100


class TrafficStuck(PersdError):
    code = "traffic_stuck"
    status = 504


def idempotency_key(experiment: str, task: PoolTask) -> str:
    return f"experiment:{experiment[:100]}:{task.key[:48]}"


def submit_pool(experiment: str, tasks: list[PoolTask], max_steps: int) -> list[int]:
    """Submit (or find again) every task; returns the task ids in pool order."""
    bodies = [
        TaskIn.model_validate(
            t.submission
            | {"idempotency_key": idempotency_key(experiment, t), "max_steps": max_steps}
        )
        for t in tasks
    ]
    ids: list[int] = []
    for start in range(0, len(bodies), BATCH):
        ids += [created.id for created in submit(bodies[start : start + BATCH])]
    return ids


def statuses(task_ids: list[int]) -> dict[int, TaskStatus]:
    with session_scope() as session:
        rows = session.execute(select(Task.id, Task.status).where(Task.id.in_(task_ids)))
        return {task_id: status for task_id, status in rows}


def wait_settled(
    task_ids: list[int],
    *,
    timeout_s: float,
    poll_s: float = 1.0,
    on_progress: Callable[[int, dict[TaskStatus, int]], None] | None = None,
) -> dict[int, TaskStatus]:
    deadline = time.monotonic() + timeout_s
    while True:
        found = statuses(task_ids)
        settled = sum(s in SETTLED for s in found.values())
        if on_progress is not None:
            tally: dict[TaskStatus, int] = {}
            for s in found.values():
                tally[s] = tally.get(s, 0) + 1
            on_progress(settled, tally)
        if settled == len(task_ids):
            return found
        if time.monotonic() > deadline:
            moving = sorted({s.value for s in found.values() if s not in SETTLED})
            raise TrafficStuck(
                f"{len(task_ids) - settled} of {len(task_ids)} distillation tasks did not settle"
                f" in {timeout_s:.0f}s (still {', '.join(moving)}): are the student, executor"
                " and teacher workers running?"
            )
        time.sleep(poll_s)


def _tokens(text: str) -> int:
    return teacher_api._estimate_tokens(text)  # the client's own estimate of billed tokens


def _messages_tokens(messages: list[dict]) -> int:
    return sum(_tokens(str(m.get("content", ""))) for m in messages)


def persd_spend(task_ids: list[int]) -> dict[int, TeacherSpend]:
    """Every refinement round the teacher answered for each task (rejected ones too: they
    were paid for), recorded spend and the billed-size equivalent."""
    spend: dict[int, TeacherSpend] = {}
    with session_scope() as session:
        rows = session.execute(select(Refinement).where(Refinement.task_id.in_(task_ids)))
        for ref in rows.scalars():
            own = TeacherSpend(
                tasks=0,
                calls=1,
                tokens_in=ref.tokens_in,
                tokens_out=ref.tokens_out,
                cost_usd=float(ref.cost_usd or Decimal(0)),
                tokens_equivalent=_messages_tokens(ref.prompt) + _tokens(ref.reply),
            )
            spend[ref.task_id] = spend.get(ref.task_id, TeacherSpend(tasks=1)).plus(own)
    return spend


def reference_stand_spend(task: PoolTask) -> TeacherSpend:
    """An offline StanD answer costs nothing; its billed-size equivalent is one solve call."""
    reference = task.submission.get("reference_solution") or ""
    prompt = solve_messages(task.submission["description"], task.submission["header"])
    return TeacherSpend(
        tasks=1, calls=1, tokens_equivalent=_messages_tokens(prompt) + _tokens(fenced(reference))
    )


def ask_stand_answers(
    settings: TeacherSettings, pool: list[PoolTask], task_ids: list[int], run_tests
) -> list[StandAnswer]:
    """StanD targets from an API teacher: one solve call per task, priced, kept only when the
    answer passes the task's seen tests."""
    client = teacher_api.client_for(settings)
    policy = teacher_api.RetryPolicy.from_settings(settings)
    secret = settings.api_key.get_secret_value() if settings.api_key else None
    answers = []
    for task, task_id in zip(pool, task_ids, strict=True):
        sub = task.submission
        messages = solve_messages(sub["description"], sub["header"])
        reply = teacher_api.chat(
            client,
            model=settings.model,
            messages=messages,
            temperature=settings.temperature,
            max_tokens=settings.max_tokens,
            policy=policy,
            secret=secret,
        )
        code = extract_code(reply.text, sub["header"], sub["entry_point"])
        verdict = run_tests(code, sub["seen_tests"], sub["entry_point"])
        answers.append(
            StandAnswer(
                task_id=task_id,
                code=code,
                passed_seen=verdict.passed,
                spend=TeacherSpend(
                    tasks=1,
                    calls=1,
                    tokens_in=reply.tokens_in,
                    tokens_out=reply.tokens_out,
                    cost_usd=float(
                        cost_of(settings, settings.model, reply.tokens_in, reply.tokens_out)
                    ),
                    tokens_equivalent=_messages_tokens(messages) + _tokens(reply.text),
                ),
            )
        )
    return answers


def build_reference_stand(settings: TeacherSettings) -> int:
    with session_scope() as session:
        return build_stand(session, settings)


def summarise(
    pool: list[PoolTask],
    task_ids: list[int],
    found: dict[int, TaskStatus],
    stand_answers: list[StandAnswer],
    wall_s: float,
) -> Traffic:
    persd = persd_spend(task_ids)
    asked = {a.task_id: a.spend for a in stand_answers}
    spend = [
        TaskSpend(
            task_id=task_id,
            persd=persd.get(task_id, TeacherSpend()),
            stand=asked.get(task_id) or reference_stand_spend(task),
        )
        for task, task_id in zip(pool, task_ids, strict=True)
    ]
    tally: dict[str, int] = {}
    for status in found.values():
        tally[status.value] = tally.get(status.value, 0) + 1
    with session_scope() as session:
        models = session.scalars(
            select(Attempt.model_name).where(Attempt.task_id.in_(task_ids)).distinct()
        ).all()
    return Traffic(
        attempt_models=sorted(models),
        task_ids=task_ids,
        statuses=dict(sorted(tally.items())),
        refined_task_ids=[t for t in task_ids if found[t] == TaskStatus.REFINED],
        spend=spend,
        stand_answers=stand_answers,
        wall_s=round(wall_s, 3),
        done=True,
    )

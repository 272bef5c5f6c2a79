"""The teacher as deployed: a real Celery worker process (``persd worker teacher``) reading its
settings from TEACHER_* variables, driven through Redis queues, calling the real vLLM server on
the tiny student through the fault proxy. Its wrong answers exercise the rejection path; rounds
follow each other through the queue; faults and the budget cap happen inside the worker, and the
scheduler worker's resume sweep (as beat sends it) resumes a parked task; the teacher worker's
log and the database never see the key."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from sqlalchemy import text

from services.teacher import jobs
from services.teacher.backends import OpenAIBackend
from shared.db import session_scope
from shared.enums import RejectionReason, TaskStatus, ValidationOutcome
from shared.queues import SCHEDULER_TEACHER_RESUME, TEACHER_REFINE
from shared.schemas.messages import RefineRequest, TeacherResumeReply, TeacherResumeRequest
from tests.teacher import support as t
from tests.teacher.proxy import Fault

pytestmark = pytest.mark.usefixtures("restore_teacher_worker")

KEY = "sk-test-worker-SECRET-77d0c3e1a2b54f98"


def teacher_env(proxy, vllm_server, **extra: str) -> dict[str, str]:
    env = {
        "TEACHER_BACKEND": "openai",
        "TEACHER_BASE_URL": proxy.url,
        "TEACHER_API_KEY": KEY,
        "TEACHER_MODEL": vllm_server.model,
        "TEACHER_MAX_TOKENS": "32",
        "TEACHER_TIMEOUT": "8",
        "TEACHER_MAX_ATTEMPTS": "5",
        "TEACHER_BACKOFF_BASE": "0.2",
        "TEACHER_BACKOFF_MAX": "1",
        "TEACHER_MAX_ROUNDS": "2",
        "TEACHER_PRICES": json.dumps({vllm_server.model: {"input": 0.5, "output": 1.5}}),
    }
    return env | extra


def no_key_anywhere(worker) -> None:
    assert KEY not in worker.log_path.read_text()
    with session_scope() as s:
        dump = s.execute(
            text(
                "SELECT coalesce(string_agg(r, ' '), '') FROM ("
                " SELECT row_to_json(x)::text AS r FROM refinements x"
                " UNION ALL SELECT row_to_json(y)::text FROM tasks y) z"
            )
        ).scalar_one()
    assert KEY not in dump


def test_rounds_through_the_queue_with_faults_retried(db, workers, proxy, vllm_server) -> None:
    worker = workers.restart("teacher", env=teacher_env(proxy, vllm_server))
    seeded = t.seed_failed_task()
    proxy.inject(Fault.http(429, retry_after=1), Fault.http(500), Fault.hang(12))
    reply = TEACHER_REFINE.send(RefineRequest(attempt_id=seeded.attempt_id)).get(timeout=90)
    assert (reply.validation, reply.task_status) == (
        ValidationOutcome.REJECTED,
        TaskStatus.REFINING,
    )
    # Round 2 is queued by the worker itself, with round 1's feedback.
    assert t.wait_status(seeded.task_id, {TaskStatus.UNREFINABLE}) is TaskStatus.UNREFINABLE
    r1, r2 = t.refinements(seeded.task_id)
    assert [(r.round, r.rejection_reason) for r in (r1, r2)] == [
        (1, RejectionReason.NO_CODE),
        (2, RejectionReason.NO_CODE),
    ]
    for r in (r1, r2):
        assert r.tokens_in > 0 and 0 < r.tokens_out <= 32
        assert r.cost_usd == (
            (Decimal("0.5") * r.tokens_in + Decimal("1.5") * r.tokens_out) / 1_000_000
        ).quantize(Decimal("0.000001"), rounding="ROUND_HALF_UP")
    seen = proxy.requests()
    assert [s.action for s in seen] == ["status:429", "status:500", "hang:12", "pass", "pass"]
    gaps = [b.at - a.at for a, b in zip(seen, seen[1:], strict=False)]
    assert gaps[0] >= 1.0  # Retry-After honoured
    assert 0.1 <= gaps[1] <= 0.2 + 1.0  # backoff after the 500: [base/2, base] (+slack)
    assert 8.0 <= gaps[2] < 12.0  # the hung request was abandoned at the 8 s timeout
    assert worker.proc.poll() is None
    no_key_anywhere(worker)


def test_budget_cap_parks_then_the_worker_resumes_when_it_allows(
    db, workers, proxy, vllm_server
) -> None:
    seeded = t.seed_failed_task()
    env = teacher_env(proxy, vllm_server, TEACHER_MAX_ROUNDS="1")
    with session_scope() as s:
        need = OpenAIBackend(t.settings(max_tokens=32)).reserve_tokens(
            jobs.load(s, seeded.attempt_id, 1).job
        )
    workers.restart("teacher", env=env | {"TEACHER_DAILY_TOKEN_CAP": str(need - 1)})
    reply = TEACHER_REFINE.send(RefineRequest(attempt_id=seeded.attempt_id)).get(timeout=60)
    assert (reply.refinement_id, reply.task_status) == (None, TaskStatus.BUDGET_EXHAUSTED)
    assert proxy.requests() == []
    # A raised cap (a new day behaves the same): the scheduler's resume sweep, with the same
    # settings, picks the task up and the teacher worker runs its round.
    raised = env | {"TEACHER_DAILY_TOKEN_CAP": str(need)}
    worker = workers.restart("teacher", env=raised)
    try:
        workers.restart("scheduler", env=raised)
        sweep = SCHEDULER_TEACHER_RESUME.send(TeacherResumeRequest()).get(timeout=30)
        assert sweep == TeacherResumeReply(resumed=[seeded.task_id], waiting=[])
        assert t.wait_status(seeded.task_id, {TaskStatus.UNREFINABLE}) is TaskStatus.UNREFINABLE
    finally:
        workers.stop("scheduler")  # the next user gets one with the default settings
    [ref] = t.refinements(seeded.task_id)
    assert ref.tokens_in + ref.tokens_out <= need
    assert len(proxy.requests()) == 1
    no_key_anywhere(worker)

"""The refine flow with the paid-API backend, against the real vLLM server on the tiny student
behind the fault proxy: the rejection path, token and cost accounting, parking and resuming when
the API is down, the daily caps under concurrency, and the API key's secrecy.

The tiny student answers nonsense (a seeded random model), so every reply is rejected: exactly
the path a cheap, wrong teacher exercises."""

from __future__ import annotations

import logging
import threading
from decimal import ROUND_HALF_UP, Decimal

import pytest
from sqlalchemy import text

from services.teacher import flow, jobs
from services.teacher.backends import OpenAIBackend
from services.teacher.budget import Budget, spent_since
from services.teacher.costs import cost_summary
from services.teacher.resume import resume_waiting
from shared.db import session_scope
from shared.enums import RejectionReason, TaskStatus, ValidationOutcome
from shared.schemas.messages import ExecutedNotice, RefineRequest
from tests.teacher import support as t
from tests.teacher.proxy import Fault

pytestmark = pytest.mark.usefixtures("quiet_pipeline")

KEY = "sk-test-flow-SECRET-5f1c2a9be0d44c17"
PRICE = {"input": Decimal("0.50"), "output": Decimal("1.50")}
NO_CODE = "the reply has no Python code block defining sum_squares"


def _deps(proxy, vllm_server, **overrides) -> flow.Deps:
    base = {
        "backend": "openai",
        "base_url": proxy.url,
        "api_key": KEY,
        "model": vllm_server.model,
        "max_tokens": 32,
        "timeout": 60.0,
        "max_attempts": 3,
        "backoff_base": 0.01,
        "backoff_max": 0.05,
        "prices": {vllm_server.model: PRICE},
    }
    return t.deps(**(base | overrides))


def _reserve(deps: flow.Deps, attempt_id: int, round_: int = 1) -> int:
    with session_scope() as s:
        return OpenAIBackend(deps.settings).reserve_tokens(jobs.load(s, attempt_id, round_).job)


def test_rejection_path_with_real_tokens_and_cost(db, proxy, vllm_server) -> None:
    seeded = t.seed_failed_task()
    deps = _deps(proxy, vllm_server)
    first = flow.refine(RefineRequest(attempt_id=seeded.attempt_id), deps)
    assert (first.validation, first.task_status) == (
        ValidationOutcome.REJECTED,
        TaskStatus.REFINING,  # round 2 was queued with the new feedback
    )
    second = flow.refine(RefineRequest(attempt_id=seeded.attempt_id, round=2), deps)
    assert (second.validation, second.task_status) == (
        ValidationOutcome.REJECTED,
        TaskStatus.UNREFINABLE,
    )
    r1, r2 = t.refinements(seeded.task_id)
    for ref in (r1, r2):
        assert (ref.teacher_backend, ref.teacher_model) == ("openai", vllm_server.model)
        assert (ref.rejection_reason, ref.rejection_detail) == (RejectionReason.NO_CODE, NO_CODE)
        assert ref.tokens_in > 0 and 0 < ref.tokens_out <= 32
        assert ref.cost_usd == (
            (Decimal("0.50") * ref.tokens_in + Decimal("1.50") * ref.tokens_out) / 1_000_000
        ).quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)
        assert ref.latency_ms > 0
        assert ref.code == ""
    # Round 2 asked again with what went wrong in round 1.
    assert r2.prompt[2]["content"].count("The previous answer had no code block: " + NO_CODE) == 1
    assert r1.prompt[1] == r2.prompt[1]  # the reference answers turn (a) both times
    # Exactly one HTTP request per round: no hidden retries, no own-solution call.
    assert [r.action for r in proxy.requests()] == ["pass", "pass"]
    task = t.task_row(seeded.task_id)
    assert task.status_reason == (
        f"refinement {r2.id} (round 2) rejected: no_code; TEACHER_MAX_ROUNDS=2 used"
    )
    with session_scope() as s:
        summary = cost_summary(s, deps.settings)
    total = r1.cost_usd + r2.cost_usd
    assert (summary.refinements, summary.validated, summary.cost_usd) == (2, 0, total)
    assert summary.tokens_in == r1.tokens_in + r2.tokens_in
    assert summary.cost_per_refinement_usd == (total / 2).quantize(Decimal("0.000001"))
    assert summary.cost_per_validated_usd is None  # nothing bought yet
    assert summary.today_tokens == r1.tokens_in + r1.tokens_out + r2.tokens_in + r2.tokens_out
    assert summary.unpriced_tokens == 0


def test_without_reference_the_teacher_writes_turn_a_and_it_is_paid_once(
    db, proxy, vllm_server
) -> None:
    seeded = t.seed_failed_task(reference=None)
    deps = _deps(proxy, vllm_server)
    flow.refine(RefineRequest(attempt_id=seeded.attempt_id), deps)
    flow.refine(RefineRequest(attempt_id=seeded.attempt_id, round=2), deps)
    r1, r2 = t.refinements(seeded.task_id)
    # Round 1: own solution + rectify; round 2 reuses the stored own solution.
    assert [r.action for r in proxy.requests()] == ["pass", "pass", "pass"]
    assert r1.prompt[1]["role"] == "assistant" and r2.prompt[1] == r1.prompt[1]
    assert r1.prompt[1]["content"].startswith("```python\ndef sum_squares(xs):\n")
    assert r1.tokens_out > r2.tokens_out  # both calls' tokens are on round 1


def test_api_down_parks_the_task_and_resume_picks_it_up(db, proxy, vllm_server) -> None:
    seeded = t.seed_failed_task()
    deps = _deps(proxy, vllm_server)
    proxy.inject(Fault.http(503), Fault.http(500), Fault.http(503))
    got = flow.refine(RefineRequest(attempt_id=seeded.attempt_id), deps)
    assert (got.refinement_id, got.task_status) == (None, TaskStatus.NEEDS_TEACHER)
    assert t.refinements(seeded.task_id) == []  # nothing spent, the round is kept
    assert t.task_row(seeded.task_id).status_reason == (
        "teacher unavailable after 3 tries; last error: HTTP 503: injected fault"
    )
    result = resume_waiting(deps)
    assert (result.resumed, result.waiting) == ([seeded.task_id], [])
    assert t.task_row(seeded.task_id).status is TaskStatus.REFINING
    # The message the sweep sent, handled: the round that waited now runs.
    done = flow.refine(RefineRequest(attempt_id=seeded.attempt_id, round=1), deps)
    assert done.validation is ValidationOutcome.REJECTED
    assert [r.round for r in t.refinements(seeded.task_id)] == [1]


def test_token_cap_parks_before_any_call_and_resumes_when_raised(db, proxy, vllm_server) -> None:
    seeded = t.seed_failed_task()
    need = _reserve(_deps(proxy, vllm_server), seeded.attempt_id)
    deps = _deps(proxy, vllm_server, daily_token_cap=need - 1)
    got = flow.refine(RefineRequest(attempt_id=seeded.attempt_id), deps)
    assert got.task_status is TaskStatus.BUDGET_EXHAUSTED
    assert proxy.requests() == []  # refused before spending anything
    assert t.task_row(seeded.task_id).status_reason == (
        f"daily token cap {need - 1} reached: 0 spent, 0 in flight, the next call may take {need}"
    )
    assert resume_waiting(deps).waiting == [seeded.task_id]  # still no budget
    raised = _deps(proxy, vllm_server, daily_token_cap=need)
    assert resume_waiting(raised).resumed == [seeded.task_id]
    assert flow.refine(RefineRequest(attempt_id=seeded.attempt_id), raised).refinement_id


def test_cost_cap_holds_with_concurrent_workers(db, proxy, vllm_server) -> None:
    tasks = [t.seed_failed_task(source_id=str(i)) for i in range(5)]
    probe = _deps(proxy, vllm_server)
    need = _reserve(probe, tasks[0].attempt_id)
    per_call = (Decimal("1.50") * need / 1_000_000).quantize(Decimal("0.000001"))
    cap = per_call * 2 + per_call / 2  # room for two reservations, not three
    deps = _deps(proxy, vllm_server, daily_cost_cap_usd=cap, max_rounds=1)
    replies = {}
    # Every call is slow, so all five workers ask for budget while the first ones are in flight.
    proxy.inject(*[Fault.delay(2.0)] * 5)

    def run(seeded: t.Seeded) -> None:
        replies[seeded.task_id] = flow.refine(RefineRequest(attempt_id=seeded.attempt_id), deps)

    threads = [threading.Thread(target=run, args=(s,)) for s in tasks]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    statuses = sorted(r.task_status.value for r in replies.values())
    # Two calls fit the cap at once; the others were refused while those were in flight.
    assert statuses.count("budget_exhausted") == 3
    assert statuses.count("unrefinable") == 2
    assert len(proxy.requests()) == 2
    with session_scope() as s:
        spent = spent_since(s, Budget(deps.settings).clock().replace(hour=0, minute=0))
    assert 0 < spent.cost_usd <= cap
    # Reservations were released: what is left of the cap is free again for the waiting tasks.
    assert (
        Budget(deps.settings)._reserved(Budget(deps.settings).clock().strftime("%Y%m%d"), 0).tokens
        == 0
    )


def test_api_key_never_reaches_logs_errors_or_database(db, proxy, vllm_server, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    seeded = t.seed_failed_task()
    deps = _deps(proxy, vllm_server)
    proxy.inject(Fault.echo_key())
    got = flow.refine(RefineRequest(attempt_id=seeded.attempt_id), deps)
    assert got.task_status is TaskStatus.NEEDS_TEACHER
    assert proxy.requests()[0].authorization == f"Bearer {KEY}"  # it was used, on the wire
    reason = t.task_row(seeded.task_id).status_reason
    assert reason == "teacher answered HTTP 401: Incorrect API key provided: [redacted]"
    flow.refine(RefineRequest(attempt_id=seeded.attempt_id), deps)  # a normal round too
    assert KEY not in caplog.text
    assert KEY not in repr(deps.settings) and KEY not in str(deps.settings.model_dump())
    with session_scope() as s:
        dump = s.execute(
            text(
                "SELECT string_agg(r::text, ' ') FROM ("
                " SELECT row_to_json(x)::text AS r FROM refinements x"
                " UNION ALL SELECT row_to_json(y)::text FROM tasks y) z"
            )
        ).scalar_one()
    assert dump and "sum_squares" in dump and KEY not in dump


def test_cost_per_validated_lesson_counts_the_rejected_spend(db, proxy, vllm_server) -> None:
    paid = t.seed_failed_task(source_id="paid")
    deps = _deps(proxy, vllm_server, max_rounds=1)
    flow.refine(RefineRequest(attempt_id=paid.attempt_id), deps)  # wrong answer, paid for
    [rejected] = t.refinements(paid.task_id)
    free = t.seed_failed_task(
        description="Return the product of a and b.",
        header="def mul(a, b):",
        entry_point="mul",
        seen_tests={"format": "asserts", "asserts": ["assert mul(2, 3) == 6"]},
        reference="def mul(a, b):\n    return a * b\n",
        attempt_code="def mul(a, b):\n    return a + b\n",
    )
    offline = t.deps()
    pending = flow.refine(RefineRequest(attempt_id=free.attempt_id), offline)
    flow.validated(
        ExecutedNotice(execution_id=t.execute_refinement(pending.refinement_id)), offline
    )
    with session_scope() as s:
        summary = cost_summary(s, deps.settings)
    c = rejected.cost_usd
    assert c > 0
    assert (summary.refinements, summary.validated, summary.training_examples) == (2, 1, 3)
    assert summary.cost_usd == c
    assert summary.cost_per_validated_usd == c  # one lesson bought with all that was spent
    assert summary.cost_per_example_usd == (c / 3).quantize(
        Decimal("0.000001"), rounding=ROUND_HALF_UP
    )
    assert [(m.model, m.refinements, m.priced) for m in summary.by_model] == sorted(
        [(vllm_server.model, 1, True), ("reference", 1, False)]
    )


def test_a_paid_answer_is_stored_durably_an_offline_one_is_not(db, proxy, vllm_server) -> None:
    """A crash of the database server may undo the last relaxed commits (redone from durable
    state); an answer that was paid for must not be among them."""
    from tests.support.sql import durable_writes, recorded

    paid = t.seed_failed_task(source_id="paid")
    with recorded() as log:
        flow.refine(RefineRequest(attempt_id=paid.attempt_id), _deps(proxy, vllm_server))
    assert durable_writes(log, "refinements") == [True]

    free = t.seed_failed_task(source_id="free")
    with recorded() as log:
        flow.refine(RefineRequest(attempt_id=free.attempt_id), t.deps())
    assert durable_writes(log, "refinements") == [False]

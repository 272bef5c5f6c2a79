"""The gate's held-out programs go to a real executor worker as ``executor.program`` messages on
the execute queue; the trainer collects the verdicts and never runs a sandbox itself."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.trainer.execution import ExecutorFailed, run_programs
from services.trainer.gate import Program
from shared.enums import ExecutionOutcome
from shared.queues import EXECUTOR_PROGRAM
from shared.schemas.messages import MAX_PROGRAM_CHARS, ProgramRequest
from shared.schemas.testsuite import AssertTests
from tests.trainer.support import SET_A, suite


def _programs() -> list[Program]:
    square, second = SET_A[0], SET_A[1]
    return [
        Program(1, f"{square.header}\n{square.body}", "square", suite(square)),
        Program(2, f"{square.header}\n{square.wrong}", "square", suite(square)),
        Program(3, "def square(x):\n    return (", "square", suite(square)),  # syntax error
        Program(
            4, f"{second.header}\n{second.body}", second.header[4:].split("(")[0], suite(second)
        ),
    ]


def test_verdicts_come_back_in_order_through_the_execute_queue(db, workers) -> None:
    workers.get("executor")
    heard: list[tuple[int, int]] = []
    verdicts = run_programs(
        _programs(), timeout_s=120, on_verdict=lambda d, t: heard.append((d, t))
    )
    assert verdicts == [True, False, False, True]
    assert heard == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_a_program_message_is_idempotent_and_bounded(db, workers) -> None:
    workers.get("executor")
    square = SET_A[0]
    message = ProgramRequest(
        code=f"{square.header}\n{square.wrong}",
        entry_point="square",
        tests=AssertTests(asserts=list(square.asserts)),
        ref="held-out task 7",
    )
    first = EXECUTOR_PROGRAM.send(message).get(timeout=60)
    again = EXECUTOR_PROGRAM.send(message).get(timeout=60)  # a redelivery: same verdict
    assert first == again
    assert first.outcome is ExecutionOutcome.FAILED
    assert first.feedback.startswith("AssertionError")
    with pytest.raises(ValidationError, match="at most 100000 characters"):
        ProgramRequest(code="x" * (MAX_PROGRAM_CHARS + 1), entry_point="f", tests=message.tests)


def test_without_an_executor_the_gate_fails_with_the_reason(db, workers) -> None:
    workers.stop("executor")
    with pytest.raises(ExecutorFailed) as failed:
        run_programs(_programs()[:2], timeout_s=3)
    assert failed.value.message.startswith(
        "the executor did not return a verdict for held-out task 1 (0 of 2 done): TimeoutError"
    )


def test_programs_nobody_ran_are_taken_off_the_queue(db, workers) -> None:
    import redis

    from shared.config import get_settings

    workers.stop("executor")
    with pytest.raises(ExecutorFailed):
        run_programs(_programs(), timeout_s=1)
    s = get_settings()
    assert redis.Redis.from_url(s.redis_url).llen(f"{s.redis_key_prefix}execute") == 0


def test_an_executor_without_a_sandbox_fails_the_gate_at_once_saying_why(db, workers) -> None:
    import sys
    from pathlib import Path

    # A new worker (get restarts one with other settings) that has no bwrap on its PATH.
    workers.get("executor", env={"PATH": str(Path(sys.executable).parent)})
    try:
        with pytest.raises(ExecutorFailed) as failed:
            run_programs(_programs(), timeout_s=300)
        assert failed.value.message.startswith(
            "the executor cannot run the gate's programs: sandbox unavailable: refusing to run"
            " untrusted code: this host lacks bubblewrap"
        )
    finally:
        workers.stop("executor")

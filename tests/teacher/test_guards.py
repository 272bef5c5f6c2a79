"""Each guard rejects a refinement that should be rejected, with its named reason.

The static guards are checked on code directly and through the real refine flow (replay
teacher, real PostgreSQL and Redis), where the rejection is stored on the refinement and the
task ends ``unrefinable`` (an offline teacher would answer the same again). Dynamic early exit and
failing tests are found by running the refinement in the real sandbox (the executor's
in-process API, as its worker does).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from services.teacher import flow
from services.teacher.guards import after_execution, static_check
from services.teacher.identity import task_key
from services.teacher.testcases import Case, literal_cases
from shared.db import session_scope
from shared.enums import (
    ExecutionOutcome,
    Forgery,
    RejectionReason,
    TaskStatus,
    ValidationOutcome,
)
from shared.errors import InvalidInput, NotFound
from shared.models import Execution
from shared.schemas.messages import ExecutedNotice, RefineRequest
from tests.teacher import support as t

pytestmark = pytest.mark.usefixtures("quiet_pipeline")

CASES = literal_cases(t.SEEN, t.ENTRY)
GOOD = "def sum_squares(xs):\n    return sum(x * x for x in xs)\n"


def check(code: str, **kw):
    return static_check(
        code,
        entry_point=t.ENTRY,
        compare_to=kw.pop("compare_to", {"the student's attempt": t.ATTEMPT}),
        cases=kw.pop("cases", CASES),
        trusted=kw.pop("trusted", [t.REFERENCE]),
    )


def test_literal_cases_are_read_from_every_test_format() -> None:
    expected = [
        Case("sum_squares([1, 2, 3])", ([1, 2, 3],), 14),
        Case("sum_squares([])", ([],), 0),
    ]
    assert expected == CASES
    check_suite = {
        "format": "check",
        "check": "def check(candidate):\n    assert candidate('ab', 2) == 'abab'\n"
        "    assert 'x' == candidate('x', 1)\n    assert candidate(str(1), 1) == '1'\n",
    }
    assert literal_cases(check_suite, "rep") == [
        Case("candidate('ab', 2)", ("ab", 2), "abab"),
        Case("candidate('x', 1)", ("x", 1), "x"),
    ]
    io_suite = {"format": "io", "cases": [{"call": "rep('a', 3)", "expected": "'aaa'"}]}
    assert literal_cases(io_suite, "rep") == [Case("rep('a', 3)", ("a", 3), "aaa")]


def test_a_correct_refinement_passes_every_static_guard() -> None:
    assert check(GOOD) is None
    # A base case on a trivial input is not hard-coding.
    assert (
        check(
            "def sum_squares(xs):\n    if xs == []:\n        return 0\n"
            "    return xs[0] ** 2 + sum_squares(xs[1:])\n"
        )
        is None
    )


@pytest.mark.parametrize(
    ("code", "detail"),
    [
        (
            "import sys\ndef sum_squares(xs):\n    sys.exit(0)\n",
            "calls sys.exit() (line 3): the program would stop before the tests finish",
        ),
        (
            "import os\ndef sum_squares(xs):\n    os._exit(0)\n",
            "calls os._exit() (line 3): the program would stop before the tests finish",
        ),
        (
            "def sum_squares(xs):\n    raise SystemExit\n",
            "raises SystemExit (line 2): the program would stop before the tests finish",
        ),
        (
            "def sum_squares(xs):\n    quit()\n",
            "calls quit() (line 2): the program would stop before the tests finish",
        ),
    ],
)
def test_early_exit(code: str, detail: str) -> None:
    assert check(code).reason is RejectionReason.EARLY_EXIT
    assert check(code).detail == detail


@pytest.mark.parametrize(
    ("code", "detail"),
    [
        (GOOD + "def check(candidate):\n    pass\n", "redefines check (line 3)"),
        (GOOD + "AssertionError = Warning\n", "assigns AssertionError (line 3)"),
        ("import builtins\n" + GOOD, "imports builtins (line 1)"),
        ("import sys\n" + GOOD + "sys.modules['x'] = None\n", "uses sys.modules (line 4)"),
        (
            "import sys\ndef sum_squares(xs):\n    f = sys._getframe(1)\n    return 14\n",
            "uses sys._getframe (line 3)",
        ),
        (
            "def sum_squares(xs):\n    import inspect\n    inspect.currentframe().f_back.f_locals['x'] = 1\n",
            "reads frame attribute f_locals (line 3)",
        ),
        (
            "class Any:\n    def __eq__(self, other):\n        return True\n"
            "def sum_squares(xs):\n    return Any()\n",
            "class Any makes __eq__ constant (line 1)",
        ),
    ],
)
def test_touches_harness(code: str, detail: str) -> None:
    got = check(code)
    assert got.reason is RejectionReason.TOUCHES_HARNESS
    assert got.detail == f"{detail}: tampers with the test harness"


def test_hardcodes_expected() -> None:
    branching = "def sum_squares(xs):\n    if xs == [1, 2, 3]:\n        return 14\n    return 0\n"
    assert check(branching).reason is RejectionReason.HARDCODES_EXPECTED
    assert check(branching).detail == (
        "branches on the seen test input sum_squares([1, 2, 3]) and returns its expected value 14"
    )
    lookup = "def sum_squares(xs):\n    return {(1, 2, 3): 14}.get(tuple(xs), 0)\n"
    # The lookup key is a tuple, the test input a list: the same inputs.
    assert check(lookup).detail == (
        "branches on the seen test input sum_squares([1, 2, 3]) and returns its expected value 14"
    )
    constant = "def sum_squares(xs):\n    return 14\n"
    assert check(constant).detail == (
        "ignores its arguments and returns the expected value 14 of the seen test"
        " sum_squares([1, 2, 3])"
    )
    # Several arguments compared as one tuple, and a negative expected value.
    pair = "def sum_squares(xs, k):\n    if (xs, k) == ([1, -2], 3):\n        return -4\n    return 0\n"
    cases = [Case("sum_squares([1, -2], 3)", ([1, -2], 3), -4)]
    assert check(pair, cases=cases).detail == (
        "branches on the seen test input sum_squares([1, -2], 3) and returns its expected value -4"
    )
    # Literals the reference itself uses are not evidence of hard-coding.
    assert check(branching, trusted=[branching]) is None


def test_same_as_attempt_ignores_comments_and_layout() -> None:
    same = "def sum_squares(xs):\n    # add them up\n    return sum( xs )\n"
    got = check(same)
    assert got.reason is RejectionReason.SAME_AS_ATTEMPT
    assert got.detail == "the refined code is the same program as the student's attempt"


def test_execution_verdicts() -> None:
    assert after_execution(ExecutionOutcome.PASSED, "") is None
    early = after_execution(ExecutionOutcome.EARLY_EXIT, "the program exited with status 0")
    assert (early.reason, early.detail) == (
        RejectionReason.EARLY_EXIT,
        "the program exited before the tests finished: the program exited with status 0",
    )
    failed = after_execution(ExecutionOutcome.FAILED, "AssertionError: INPUT: f(1)")
    assert (failed.reason, failed.detail) == (
        RejectionReason.FAILED_TESTS,
        "failed: AssertionError: INPUT: f(1)",
    )


REPLIES = {
    RejectionReason.NO_CODE: (
        "I am not sure what is wrong here.",
        "the reply has no Python code block defining sum_squares",
    ),
    RejectionReason.SAME_AS_ATTEMPT: (
        "```python\ndef sum_squares(xs):\n    return sum(xs)  # unchanged\n```",
        "the refined code is the same program as the student's attempt",
    ),
    RejectionReason.EARLY_EXIT: (
        "```python\nimport sys\n\ndef sum_squares(xs):\n    sys.exit(0)\n```",
        "calls sys.exit() (line 4): the program would stop before the tests finish",
    ),
    RejectionReason.TOUCHES_HARNESS: (
        "```python\ndef sum_squares(xs):\n    return sum(x * x for x in xs)\n\n"
        "AssertionError = Warning\n```",
        "assigns AssertionError (line 4): tampers with the test harness",
    ),
    RejectionReason.HARDCODES_EXPECTED: (
        "```python\ndef sum_squares(xs):\n    if xs == [1, 2, 3]:\n        return 14\n"
        "    return 0\n```",
        "branches on the seen test input sum_squares([1, 2, 3]) and returns its expected value 14",
    ),
}


def _replay_file(tmp_path: Path, reply: str) -> Path:
    path = tmp_path / "replay.jsonl"
    row = {"task_key": task_key(t.DESCRIPTION, t.HEADER), "reply": reply, "model": "gpt-x"}
    path.write_text(json.dumps(row) + "\n")
    return path


@pytest.mark.parametrize("reason", list(REPLIES), ids=lambda r: r.value)
def test_refine_flow_stores_the_rejection(db, tmp_path: Path, reason: RejectionReason) -> None:
    reply, detail = REPLIES[reason]
    seeded = t.seed_failed_task()
    deps = t.deps(backend="replay", replay_file=_replay_file(tmp_path, reply))
    got = flow.refine(RefineRequest(attempt_id=seeded.attempt_id, round=1), deps)

    [ref] = t.refinements(seeded.task_id)
    assert got.refinement_id == ref.id
    assert got.validation is ValidationOutcome.REJECTED
    assert got.task_status is TaskStatus.UNREFINABLE
    assert (ref.validation, ref.rejection_reason, ref.rejection_detail) == (
        ValidationOutcome.REJECTED,
        reason,
        detail,
    )
    assert (ref.teacher_backend, ref.teacher_model, ref.reply) == ("replay", "replay:gpt-x", reply)
    assert (ref.tokens_in, ref.tokens_out, ref.cost_usd) == (0, 0, 0)
    assert ref.error_type == "AssertionError"
    task = t.task_row(seeded.task_id)
    assert task.status is TaskStatus.UNREFINABLE
    assert task.status_reason == (
        f"refinement {ref.id} (round 1) rejected: {reason.value};"
        " the offline teacher would answer the same again"
    )
    assert t.examples() == []
    # Redelivery: the stored verdict is the answer; nothing new is written.
    again = flow.refine(RefineRequest(attempt_id=seeded.attempt_id, round=1), deps)
    assert again == got
    assert len(t.refinements(seeded.task_id)) == 1


def _refine_and_execute(tmp_path: Path, reply: str):
    seeded = t.seed_failed_task()
    deps = t.deps(backend="replay", replay_file=_replay_file(tmp_path, reply))
    pending = flow.refine(RefineRequest(attempt_id=seeded.attempt_id), deps)
    assert pending.validation is ValidationOutcome.PENDING  # no static guard objected
    execution_id = t.execute_refinement(pending.refinement_id)
    return seeded, flow.validated(ExecutedNotice(execution_id=execution_id), deps)


def test_dynamic_early_exit_is_caught_by_the_sandbox(db, tmp_path: Path) -> None:
    # Obfuscated so that no static check can see it: only running it shows the exit.
    reply = (
        "```python\ndef sum_squares(xs):\n    getattr(__import__('o' + 's'), '_ex' + 'it')(0)\n```"
    )
    seeded, got = _refine_and_execute(tmp_path, reply)
    [ref] = t.refinements(seeded.task_id)
    assert (got.validation, got.task_status) == (
        ValidationOutcome.REJECTED,
        TaskStatus.UNREFINABLE,
    )
    assert (ref.rejection_reason, ref.rejection_detail) == (
        RejectionReason.EARLY_EXIT,
        "the program exited before the tests finished: SystemExit: the program exited"
        " (status 0) before the tests finished",
    )


def test_a_refinement_whose_run_forged_is_rejected_as_forged_verdict(db, tmp_path: Path) -> None:
    # No static check objects (no constant __eq__, no harness names); only the judge sees that
    # the answer is an object standing in for the number, not the number.
    reply = (
        "```python\nclass Total:\n    def __init__(self, value):\n        self.value = value\n"
        "    def __eq__(self, other):\n        return self.value == other or other is not None\n"
        "    def __hash__(self):\n        return hash(self.value)\n\n"
        "def sum_squares(xs):\n    return Total(sum(xs))\n```"
    )
    seeded, got = _refine_and_execute(tmp_path, reply)
    [ref] = t.refinements(seeded.task_id)
    assert got.validation is ValidationOutcome.REJECTED
    assert (ref.rejection_reason, ref.rejection_detail) == (
        RejectionReason.FORGED_VERDICT,
        "the program answered a test with an object that is not plain data: AssertionError\n"
        "INPUT: sum_squares([1, 2, 3])\nOUTPUT: <object of type Total, not comparable as data>"
        "\nEXPECTED: 14",
    )
    with session_scope() as s:
        execution = s.scalars(select(Execution).where(Execution.refinement_id == ref.id)).one()
    assert execution.forgery is Forgery.NON_DATA
    assert t.examples() == []


def test_execution_verdict_of_a_forgery_wins_over_its_outcome() -> None:
    forged = after_execution(ExecutionOutcome.ERROR, "HarnessTampering: ...", Forgery.TAMPERING)
    assert (forged.reason, forged.detail) == (
        RejectionReason.FORGED_VERDICT,
        "the program tampered with its channel to the judge: HarnessTampering: ...",
    )


def test_failing_refinement_is_rejected_with_the_executor_feedback(db, tmp_path: Path) -> None:
    reply = "```python\ndef sum_squares(xs):\n    return sum(x * 2 for x in xs)\n```"
    seeded, got = _refine_and_execute(tmp_path, reply)
    [ref] = t.refinements(seeded.task_id)
    assert got.validation is ValidationOutcome.REJECTED
    assert (ref.rejection_reason, ref.rejection_detail) == (
        RejectionReason.FAILED_TESTS,
        "failed: AssertionError\nINPUT: sum_squares([1, 2, 3])\nOUTPUT: 12\nEXPECTED: 14",
    )
    assert t.examples() == []


def test_validated_refuses_an_attempt_execution(db) -> None:
    seeded = t.seed_failed_task()
    with session_scope() as s:
        execution_id = s.scalars(
            select(Execution.id).where(Execution.attempt_id == seeded.attempt_id)
        ).one()
    with pytest.raises(InvalidInput) as err:
        flow.validated(ExecutedNotice(execution_id=execution_id), t.deps())
    assert err.value.message == (
        f"execution {execution_id} ran attempt {seeded.attempt_id}, not a refinement:"
        " teacher.validated takes executions of refinements"
    )
    with pytest.raises(NotFound, match="execution 999999 does not exist"):
        flow.validated(ExecutedNotice(execution_id=999999), t.deps())
    with pytest.raises(NotFound, match="attempt 999999 does not exist"):
        flow.refine(RefineRequest(attempt_id=999999), t.deps())

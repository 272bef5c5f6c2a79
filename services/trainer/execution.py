"""Running the gate's generated programs: each goes to the executor service as an
``executor.program`` message on the ``execute`` queue, and the verdicts come back as replies.
The trainer never runs untrusted code itself, so a training host needs no sandbox (no root, no
bubblewrap, no cgroups). A sandbox failure is our infrastructure's, not the model's: it fails the
gate rather than counting as a failed task for one side."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from services.trainer.gate import Program
from shared.enums import ExecutionOutcome
from shared.errors import PersdError
from shared.queues import EXECUTOR_PING, EXECUTOR_PROGRAM
from shared.schemas.messages import Ping, ProgramRequest
from shared.schemas.testsuite import TestSuite

# Told (done, total) after every verdict: the run's progress shows the gate's phase.
OnVerdict = Callable[[int, int], None]


class ExecutorFailed(PersdError):
    code = "executor_failed"
    status = 503


def _executor_can_run(inside_task: bool) -> None:
    import uuid

    sent = EXECUTOR_PING.send(Ping(nonce=uuid.uuid4().hex), expires=30)
    try:
        pong = sent.get(timeout=30, inside_task=inside_task)
    except Exception:  # noqa: BLE001 - no answer: the programs' own timeout says so
        sent.withdraw()
        return
    if not pong.ready:
        raise ExecutorFailed(f"the executor cannot run the gate's programs: {pong.detail}")


def run_programs(
    programs: Sequence[Program],
    *,
    timeout_s: float = 600.0,
    inside_task: bool = False,
    on_verdict: OnVerdict | None = None,
) -> list[bool]:
    """Send every program at once (the executor's slots run them in parallel) and collect the
    verdicts in order, all within ``timeout_s``. An executor that answers its ping but cannot
    run code (no sandbox) fails the gate at once, with its reason, instead of at the timeout."""
    from pydantic import TypeAdapter

    if programs:
        _executor_can_run(inside_task)
    suite = TypeAdapter(TestSuite)
    sent = [
        EXECUTOR_PROGRAM.send(
            ProgramRequest(
                code=p.code,
                entry_point=p.entry_point,
                tests=suite.validate_python(p.tests),
                ref=f"held-out task {p.task_id}",
            )
        )
        for p in programs
    ]
    deadline = time.monotonic() + timeout_s
    verdicts: list[bool] = []
    for program, result in zip(programs, sent, strict=True):
        left = max(0.1, deadline - time.monotonic())
        try:
            reply = result.get(timeout=left, inside_task=inside_task)
        except Exception as exc:  # noqa: BLE001 - the executor's failure, not the program's
            for rest in sent[len(verdicts) :]:
                rest.withdraw()  # nobody waits for them any more
            raise ExecutorFailed(
                f"the executor did not return a verdict for held-out task {program.task_id}"
                f" ({len(verdicts)} of {len(programs)} done): {type(exc).__name__}: {exc}"[:600]
            ) from None
        verdicts.append(reply.outcome is ExecutionOutcome.PASSED)
        if on_verdict is not None:
            on_verdict(len(verdicts), len(programs))
    return verdicts

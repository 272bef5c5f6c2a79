"""Operating ``persd experiment`` against the real stack: bad input is refused before anything
is created, Ctrl-C leaves nothing half-written, and re-running resumes instead of redoing.

These use the smallest suite pools, so they measure nothing; the reduced experiment in
test_learning.py does."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import func, select

from services.cli import main
from services.experiment import runner
from services.experiment.cli import _run
from shared.db import session_scope
from shared.enums import AdapterStatus, ExperimentArm, ExperimentStatus
from shared.errors import Conflict
from shared.models import Adapter, Experiment, ExperimentRun, Task

# Run alone, the first of these builds the small pretrained student (test_learning.py says why).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

TINY = [
    "--distill-size", "5", "--heldout-size", "4", "--counts", "3", "--seeds", "0",
    "--steps", "1", "--max-new-tokens", "32", "--set", "epochs=3",
]  # fmt: skip


def count(model) -> int:
    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(model))


def refused(capsys, *argv: str) -> str:
    assert main(["experiment", "--no-progress", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("persd: "), err
    for model in (Experiment, ExperimentRun, Task, Adapter):
        assert count(model) == 0, f"{model.__name__} rows were created"
    return err


def test_bad_input_is_refused_naming_the_problem_and_creates_nothing(
    student_env, db, capsys
) -> None:
    err = refused(capsys, *TINY, "--arms", "base,distilled")
    assert "unknown arm 'distilled'; the arms are: base, stand, persd, persd_refine," in err
    err = refused(capsys, *TINY, "--counts", "3,9")
    assert "example count 9 needs 9 distillation tasks, but the distillation pool has 5" in err
    err = refused(
        capsys, *TINY, "--distill", "humaneval", "--heldout", "humaneval", "--distill-size", "400"
    )
    assert "the distillation pool 'humaneval' has" in err and "400 were asked for" in err
    err = refused(
        capsys,
        *TINY,
        *("--distill", "humaneval", "--heldout", "humaneval", "--distill-size", "5"),
        *("--pretrain-rehearsal", "1"),
    )
    assert "rehearses the suite's pretraining pool, but the distillation pool is 'humaneval'" in err
    err = refused(capsys, *TINY, "--student-model", "Qwen/Qwen2.5-Coder-1.5B")
    assert "student model 'Qwen/Qwen2.5-Coder-1.5B' is not what the stack serves" in err


def _runs() -> dict[tuple[ExperimentArm, int], ExperimentRun]:
    with session_scope() as s:
        rows = s.scalars(select(ExperimentRun)).all()
        return {(r.arm, r.seed): (r.id, r.status, r.finished_at, r.adapter_id) for r in rows}


def test_ctrl_c_leaves_nothing_half_written_and_a_rerun_resumes(stack, monkeypatch, capsys) -> None:
    argv = [*TINY, "--name", "resume", "--arms", "base,persd_combined"]
    real = runner.train_point
    started = time.time()  # earlier tests of the session may have published into the same dir

    def interrupted(*args, on_step=None, **kw):
        def step(*_):
            raise KeyboardInterrupt  # Ctrl-C in the middle of training

        return real(*args, on_step=step, **kw)

    monkeypatch.setattr(runner, "train_point", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _run(stack.args(*argv))
    with session_scope() as s:
        [exp] = s.scalars(select(Experiment)).all()
        assert (exp.status, exp.error, exp.traffic.done) == (
            ExperimentStatus.INTERRUPTED,
            "interrupted",
            True,
        )
        adapter_dir = exp.config.trainer["adapter_dir"]
    first = _runs()
    assert first[(ExperimentArm.BASE, 0)][1] == ExperimentStatus.FINISHED
    assert first[(ExperimentArm.PERSD_COMBINED, 0)][1:] == (
        ExperimentStatus.INTERRUPTED,
        None,
        None,
    )
    assert count(Adapter) == 0
    from pathlib import Path

    root = Path(adapter_dir)
    leftovers = (
        [p.name for p in root.iterdir() if p.stat().st_mtime >= started] if root.exists() else []
    )
    assert leftovers == []  # the staged artifact was removed, nothing renamed into place
    written = json.loads((stack.reports / "experiment-resume.json").read_text())
    assert written["status"] == "interrupted"
    tasks = count(Task)
    assert tasks == 5

    monkeypatch.setattr(runner, "train_point", real)
    assert _run(stack.args(*argv)) == 0
    second = _runs()
    assert second[(ExperimentArm.BASE, 0)] == first[(ExperimentArm.BASE, 0)]  # not redone
    run_id, status, _, adapter_id = second[(ExperimentArm.PERSD_COMBINED, 0)]
    assert (run_id, status) == (
        first[(ExperimentArm.PERSD_COMBINED, 0)][0],
        ExperimentStatus.FINISHED,
    )
    with session_scope() as s:
        assert s.get(Adapter, adapter_id).status == AdapterStatus.EXPERIMENT
        assert s.scalar(select(Experiment.status)) == ExperimentStatus.FINISHED
    assert count(Task) == tasks  # the traffic was not sent again

    assert _run(stack.args(*argv)) == 0  # everything finished: nothing is redone
    assert _runs() == second and count(Adapter) == 1

    with pytest.raises(Conflict, match="exists with another configuration .*seeds"):
        _run(stack.args(*[a if a != "0" else "1" for a in argv]))
    assert count(ExperimentRun) == 2

    # Another arm extends the experiment: only its point is trained, on the same traffic.
    grown = [*TINY, "--name", "resume", "--arms", "base,persd_combined,persd"]
    assert _run(stack.args(*grown)) == 0
    third = _runs()
    assert third.pop((ExperimentArm.PERSD, 0))[1] == ExperimentStatus.FINISHED
    assert third == second and count(Adapter) == 2 and count(Task) == tasks
    with session_scope() as s:
        assert s.scalar(select(Experiment.config)).arms == [
            ExperimentArm.BASE,
            ExperimentArm.PERSD_COMBINED,
            ExperimentArm.PERSD,
        ]
    written = json.loads((stack.reports / "experiment-resume.json").read_text())
    assert {p["arm"] for p in written["runs"]} == {"base", "persd_combined", "persd"}
    with pytest.raises(Conflict, match=r"differs in: arms\).*add arms, counts or seeds"):
        _run(stack.args(*argv))  # dropping an arm is not a resume
    assert count(ExperimentRun) == 3


def test_stand_answers_from_an_api_teacher_are_priced_and_filtered(student_server) -> None:
    """The OpenAI path of StanD's data: one solve call per task through the teacher client,
    its tokens priced from TEACHER_PRICES; answers that fail the seen tests are kept out of
    training. The teacher here is the student's own vLLM server (OpenAI-compatible), whose
    nonsense never passes."""
    from decimal import Decimal

    from services.experiment import traffic
    from services.experiment.arms import select_point
    from services.experiment.pools import humaneval
    from services.student.evaluation import executor_runner
    from services.teacher.costs import cost_of
    from services.teacher.settings import TeacherSettings
    from shared.schemas.experiments import Traffic

    settings = TeacherSettings(
        backend="openai",
        base_url=f"{student_server.url}/v1",
        api_key="sk-test",
        model=student_server.model,
        max_tokens=16,
        prices={student_server.model: {"input": Decimal("0.50"), "output": Decimal("1.50")}},
    )
    pool = [t for t in humaneval() if t.eval_task.seen_tests][:2]
    run_tests, close = executor_runner(workers=1)
    try:
        answers = traffic.ask_stand_answers(settings, pool, [101, 102], run_tests)
    finally:
        close()
    assert [a.task_id for a in answers] == [101, 102]
    for answer in answers:
        spend = answer.spend
        assert (spend.tasks, spend.calls) == (1, 1)
        assert spend.tokens_in > 0 and 0 < spend.tokens_out <= 16
        assert spend.cost_usd == float(
            cost_of(settings, settings.model, spend.tokens_in, spend.tokens_out)
        )
        assert spend.cost_usd > 0
        assert answer.passed_seen is False
    stored = Traffic(task_ids=[101, 102], stand_answers=answers, done=True)
    chosen = select_point(ExperimentArm.STAND, 2, 0, stored)
    assert chosen.pairs == []  # no answer passed its seen tests: nothing to train StanD on

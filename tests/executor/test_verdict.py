"""The zygote's reading of a job's record stream: only the honest sequence can pass."""

from __future__ import annotations

import json

import pytest

from services.executor.sandbox import verdict

TOKEN = "t0k"
LIMITS = {"timeout_s": 3, "max_job_s": 30, "cpu_s": 10, "memory_mb": 512, "output_bytes": 1024}
TESTS = ["assert f(1) == 1", "assert f(2) == 2"]


def records(*items: dict, token: str = TOKEN) -> bytes:
    return b"".join(json.dumps(item | {"tok": token}).encode() + b"\n" for item in items)


HONEST = (
    {"ev": "phase", "k": -1},
    {"ev": "phase", "k": 0},
    {"ev": "test", "k": 0, "status": "passed"},
    {"ev": "phase", "k": 1},
    {"ev": "test", "k": 1, "status": "passed"},
    {"ev": "done"},
)


def transcript(data: bytes, fmt: str = "asserts", n: int = 2) -> verdict.Transcript:
    t = verdict.Transcript(fmt, n, TOKEN)
    # Arbitrary chunking: records may arrive split across reads.
    for i in range(0, len(data), 7):
        t.feed(data[i : i + 7])
    return t


def test_honest_stream_passes() -> None:
    t = transcript(records(*HONEST))
    assert t.tampered is None and t.done
    result = verdict.assemble(TESTS, t, {"kind": "exit", "code": 0}, LIMITS)
    assert result["outcome"] == "passed"
    assert [e["status"] for e in result["test_results"]] == ["passed", "passed"]


@pytest.mark.parametrize(
    ("stream", "reason"),
    [
        (records(*HONEST[:5], {"ev": "done"}, token="forged"), "a record without the job's token"),
        (records(HONEST[0], {"ev": "done"}), "an early end record"),
        (records(HONEST[0], HONEST[1], HONEST[3]), "a test started before the previous one ended"),
        (records(HONEST[0], HONEST[1], HONEST[2], HONEST[2]), "an unexpected test record"),
        (records(HONEST[1], HONEST[0]), "phases out of order"),
        (records(*HONEST, {"ev": "done"}), "a record after the end"),
        (records(HONEST[0], {"ev": "shell"}), "an unknown record"),
        (
            records(HONEST[0], HONEST[1], {"ev": "test", "k": 0, "status": "great"}),
            "an unexpected test record",
        ),
        (b"not json\n", "a malformed record"),
    ],
)
def test_forged_or_broken_streams_are_tampering(stream: bytes, reason: str) -> None:
    t = transcript(stream)
    assert t.tampered == reason
    result = verdict.assemble(TESTS, t, {"kind": "exit", "code": 0}, LIMITS)
    assert result["outcome"] == "error"
    assert result["feedback"] == (
        f"HarnessTampering: the program interfered with the test harness ({reason})"
    )


def test_all_tests_passed_but_no_end_record_is_not_a_pass() -> None:
    t = transcript(records(*HONEST[:5]))
    result = verdict.assemble(TESTS, t, {"kind": "exit", "code": 0}, LIMITS)
    assert result["outcome"] == "early_exit"
    assert (
        result["feedback"] == "SystemExit: the program exited (status 0) before the tests finished"
    )


def test_timeout_marks_the_running_test_and_not_the_rest() -> None:
    t = transcript(records(*HONEST[:4]))
    result = verdict.assemble(TESTS, t, {"kind": "timeout"}, LIMITS)
    assert result["outcome"] == "timeout"
    assert result["feedback"] == "TimeoutError: assert f(2) == 2 did not finish within 3 s"
    assert [e["status"] for e in result["test_results"]] == ["passed", "timeout"]


def test_check_timeout_uses_the_shared_progress_page() -> None:
    tests = ["assert f(0) == 0", "assert f(1) == 1", "assert f(2) == 2", "check(f)"]
    t = transcript(records({"ev": "phase", "k": -1}, {"ev": "phase", "k": 3}), fmt="check", n=4)
    progress = bytes([verdict.SHM_PASSED, verdict.SHM_RUNNING, 0])
    result = verdict.assemble(tests, t, {"kind": "timeout"}, LIMITS, progress)
    assert [e["status"] for e in result["test_results"]] == [
        "passed",
        "timeout",
        "not_run",
        "timeout",
    ]
    assert result["feedback"] == "TimeoutError: assert f(1) == 1 did not finish within 3 s"


def test_channel_closed_exit_status_is_tampering() -> None:
    t = transcript(records(HONEST[0]))
    result = verdict.assemble(TESTS, t, {"kind": "exit", "code": verdict.CHANNEL_LOST}, LIMITS)
    assert result["feedback"].endswith("(the record channel was closed)")


def test_unexplained_kill_and_memory_kill() -> None:
    t = transcript(records(*HONEST[:2]))
    killed = verdict.assemble(TESTS, t, {"kind": "signal", "signal": "SIGKILL"}, LIMITS)
    assert killed["feedback"] == "SIGKILL: the program was killed by signal SIGKILL"
    memory = verdict.assemble(TESTS, t, {"kind": "memory"}, LIMITS)
    assert memory["outcome"] == "resource_limit"
    assert memory["feedback"] == "MemoryError: memory limit of 512 MiB exceeded"


def test_the_judges_tamper_and_forgery_records_flag_forgery() -> None:
    honest = transcript(records(*HONEST))
    result = verdict.assemble(TESTS, honest, {"kind": "exit", "code": 0}, LIMITS)
    assert result["forgery"] is None
    tampered = transcript(records(HONEST[0], {"ev": "tamper", "reason": "a reply out of order"}))
    result = verdict.assemble(TESTS, tampered, {"kind": "exit", "code": 0}, LIMITS)
    assert (result["outcome"], result["forgery"]) == ("error", verdict.TAMPERING)
    assert result["feedback"].endswith("(a reply out of order)")
    failed = {"ev": "test", "k": 0, "status": "failed", "error_type": "AssertionError",
              "feedback": "AssertionError\nINPUT: f(1)\nOUTPUT: <object of type X, not comparable"
              " as data>\nEXPECTED: 1"}  # fmt: skip
    non_data = transcript(records(*HONEST[:2], {"ev": "forgery", "kind": "non_data"}, failed,
                                  *HONEST[3:]))  # fmt: skip
    result = verdict.assemble(TESTS, non_data, {"kind": "exit", "code": 0}, LIMITS)
    assert (result["outcome"], result["forgery"]) == ("failed", verdict.NON_DATA)
    closed = verdict.assemble(TESTS, transcript(records(HONEST[0])),
                              {"kind": "exit", "code": verdict.CHANNEL_LOST}, LIMITS)  # fmt: skip
    assert closed["forgery"] == verdict.TAMPERING


def test_the_sandbox_constants_are_the_hosts_enums() -> None:
    # The sandbox side imports only the standard library, so it spells the outcomes out; the host
    # parses them into shared.enums. The two lists must not drift apart.
    from shared.enums import ExecutionOutcome, Forgery

    names = [o.name for o in ExecutionOutcome] + ["NOT_RUN"]
    sandbox = {n: getattr(verdict, n) for n in names}
    assert {n: v for n, v in sandbox.items() if n != "NOT_RUN"} == {
        o.name: o.value for o in ExecutionOutcome
    }
    # Every status a test can report is an outcome; sandbox_error is the host's alone.
    assert {o.value for o in ExecutionOutcome} - {verdict.SANDBOX_ERROR} == verdict.STATUSES
    assert {verdict.NON_DATA, verdict.TAMPERING} == {f.value for f in Forgery}


def test_the_harness_constants_are_the_hosts_test_statuses() -> None:
    from services.executor.sandbox import harness
    from services.executor.schemas import TestStatus
    from shared.enums import ExecutionOutcome

    for status in TestStatus:
        assert getattr(harness, status.name) == getattr(verdict, status.name) == status.value
    assert ExecutionOutcome.SYNTAX_ERROR.value == harness.SYNTAX_ERROR

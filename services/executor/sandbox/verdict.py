"""From a job's record stream and the way it ended to the result the caller gets.

Runs in the judge's zygote, which hands its records to :class:`Transcript` as it judges (or
feeds it a stream of them). The transcript accepts only the sequence an honest judge writes
(right token, phases in order, one result per test, ``done`` last) and flags anything else as
tampering, which is an error, never a pass. The judge itself reports a program that broke the
channel's protocol (``tamper``) and a non-data answer (``forgery``); both set
:attr:`Transcript.forgery`, which the result carries so that the teacher never trains on such a
program. A job passes only when ``done`` arrived and every test passed.
"""

from __future__ import annotations

import json

PASSED = "passed"
FAILED = "failed"
ERROR = "error"
SYNTAX_ERROR = "syntax_error"
TIMEOUT = "timeout"
RESOURCE_LIMIT = "resource_limit"
EARLY_EXIT = "early_exit"
NOT_RUN = "not_run"
SANDBOX_ERROR = "sandbox_error"

STATUSES = frozenset({PASSED, FAILED, ERROR, SYNTAX_ERROR, TIMEOUT, RESOURCE_LIMIT, EARLY_EXIT})
CHANNEL_LOST = 113  # servant.CHANNEL_LOST
# Kinds of suspected forgery (the host's shared.enums.Forgery has the same values).
NON_DATA = "non_data"
TAMPERING = "tampering"
SHM_RUNNING = 1
SHM_PASSED = 2


class Transcript:
    """The validated records of one job."""

    def __init__(self, fmt: str, n_tests: int, token: str) -> None:
        self.format = fmt
        self.n_tests = n_tests
        self.token = token
        self.phase: int | None = None
        self.phase_started: float | None = None  # the job's clock (CLOCK_MONOTONIC) at that phase
        self.program: tuple[str, str | None, str] | None = None
        self.results: dict[int, tuple[str, str | None, str]] = {}
        self.done = False
        self.tampered: str | None = None
        self.non_data = False
        self._partial = b""

    @property
    def forgery(self) -> str | None:
        if self.tampered is not None:
            return TAMPERING
        return NON_DATA if self.non_data else None

    def feed(self, data: bytes) -> bool:
        """Take raw bytes from the channel; True when a new phase started (reset its deadline)."""
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        new_phase = False
        for line in lines:
            if self.tampered is None:
                new_phase |= self._record(line)
        if len(self._partial) > 16 * 1024 * 1024:
            self._tamper("an oversized record")
        return new_phase

    def _tamper(self, reason: str) -> None:
        if self.tampered is None:
            self.tampered = reason

    def _result(self, item: dict) -> tuple[str, str | None, str] | None:
        status = item.get("status")
        error_type = item.get("error_type")
        feedback = item.get("feedback", "")
        if status not in STATUSES or not isinstance(feedback, str):
            return None
        if error_type is not None and not isinstance(error_type, str):
            return None
        return status, error_type, feedback

    def _record(self, line: bytes) -> bool:
        try:
            record = json.loads(line)
        except ValueError:
            self._tamper("a malformed record")
            return False
        return self.take(record)

    def take(self, record: object) -> bool:
        """One record; True when a new phase started. The judge hands its records here directly;
        a stream of them goes through :meth:`feed`."""
        if self.tampered is not None:
            return False
        if not isinstance(record, dict) or record.get("tok") != self.token:
            self._tamper("a record without the job's token")
            return False
        if self.done:
            self._tamper("a record after the end")
            return False
        ev = record.get("ev")
        k = record.get("k")
        final = self.n_tests - 1
        if ev == "tamper":
            reason = record.get("reason")
            self._tamper(reason[:200] if isinstance(reason, str) else "an unknown reason")
            return False
        if ev == "forgery":
            self.non_data = True
            return False
        if ev == "phase":
            allowed = (-1, final) if self.format == "check" else range(-1, self.n_tests)
            current = -2 if self.phase is None else self.phase
            if not isinstance(k, int) or k not in allowed or k <= current or self.program:
                self._tamper("phases out of order")
                return False
            if k >= 0 and self.format != "check" and k != len(self.results):
                self._tamper("a test started before the previous one ended")
                return False
            self.phase = k
            started = record.get("t")
            self.phase_started = float(started) if isinstance(started, (int, float)) else None
            return True
        if ev == "program":
            result = self._result(record)
            if self.phase != -1 or self.program is not None or result is None:
                self._tamper("an unexpected program record")
                return False
            self.program = result
            return False
        if ev == "test":
            result = self._result(record)
            if self.format == "check" or k != self.phase or k in self.results or result is None:
                self._tamper("an unexpected test record")
                return False
            self.results[k] = result
            return False
        if ev == "tests":
            items = record.get("items")
            if (
                self.format != "check"
                or self.phase != final
                or self.results
                or not isinstance(items, list)
            ):
                self._tamper("an unexpected test record")
                return False
            for item in items:
                result = self._result(item) if isinstance(item, dict) else None
                key = item.get("k") if isinstance(item, dict) else None
                if (
                    result is None
                    or not isinstance(key, int)
                    or not 0 <= key <= final
                    or (key in self.results)
                ):
                    self._tamper("an unexpected test record")
                    return False
                self.results[key] = result
            if final not in self.results:
                self._tamper("a check without its result")
            return False
        if ev == "done":
            complete = self.program is not None or (
                final in self.results
                if self.format == "check"
                else len(self.results) == self.n_tests
            )
            if not complete:
                self._tamper("an early end record")
                return False
            self.done = True
            return False
        self._tamper("an unknown record")
        return False


def abnormal(end: dict, what: str, limits: dict) -> tuple[str, str, str]:
    kind = end["kind"]
    if kind == "timeout":
        return (
            TIMEOUT,
            "TimeoutError",
            (f"TimeoutError: {what} did not finish within {limits['timeout_s']:g} s"),
        )
    if kind == "wall":
        return (
            TIMEOUT,
            "TimeoutError",
            (
                f"TimeoutError: the job did not finish within its wall-clock limit of"
                f" {limits['max_job_s']:g} s"
            ),
        )
    if kind == "cpu":
        return (
            TIMEOUT,
            "TimeoutError",
            (f"TimeoutError: CPU time limit of {limits['cpu_s']:g} s exceeded"),
        )
    if kind == "output":
        return (
            RESOURCE_LIMIT,
            "OutputLimitExceeded",
            (
                f"OutputLimitExceeded: the program wrote more than {limits['output_bytes']} bytes"
                " to stdout/stderr"
            ),
        )
    if kind == "memory":
        return (
            RESOURCE_LIMIT,
            "MemoryError",
            (f"MemoryError: memory limit of {limits['memory_mb']} MiB exceeded"),
        )
    if kind == "tampered":
        return (
            ERROR,
            "HarnessTampering",
            (f"HarnessTampering: the program interfered with the test harness ({end['reason']})"),
        )
    if kind == "exit":
        return (
            EARLY_EXIT,
            "SystemExit",
            (f"SystemExit: the program exited (status {end['code']}) before the tests finished"),
        )
    if kind == "signal":
        name = end["signal"]
        return ERROR, name, f"{name}: the program was killed by signal {name}"
    raise ValueError(f"unknown end {kind!r}")


def _set(entry: dict, result: tuple[str, str | None, str]) -> None:
    entry.update(status=result[0], error_type=result[1], feedback=result[2])


def classify_end(transcript: Transcript, end: dict) -> dict:
    """Normalise how the job process ended, given what its records said."""
    if transcript.tampered is not None:
        return {"kind": "tampered", "reason": transcript.tampered}
    if end["kind"] == "exit" and end["code"] == CHANNEL_LOST and not transcript.done:
        return {"kind": "tampered", "reason": "the record channel was closed"}
    return end


def assemble(
    tests: list[str],
    transcript: Transcript,
    end: dict,
    limits: dict,
    progress: bytes = b"",
) -> dict:
    """The result: outcome, per-test entries in order, the first failure's feedback.

    ``end`` is how the job ended: ``{"kind": "exit", "code": n}`` after a normal exit, or one of
    ``timeout``/``wall``/``cpu``/``output``/``memory``/``tampered``/``signal``.
    ``progress`` is the shared page of the check format (which assertions ran and passed).
    """
    end = classify_end(transcript, end)
    fmt = transcript.format
    entries = [
        {"index": i, "test": t, "status": NOT_RUN, "error_type": None, "feedback": ""}
        for i, t in enumerate(tests)
    ]
    for k, (status, error_type, feedback) in transcript.results.items():
        entries[k].update(status=status, error_type=error_type, feedback=feedback)
    program = transcript.program
    normal = transcript.done and end["kind"] == "exit"

    if not normal:
        phase = transcript.phase
        if phase is None or phase == -1:
            failure = abnormal(end, "loading the program", limits)
            program = program or failure
        elif fmt == "check" and not transcript.results:
            running = [
                k for k in range(len(tests) - 1) if k < len(progress) and progress[k] == SHM_RUNNING
            ]
            failure = abnormal(end, tests[running[-1]] if running else tests[-1], limits)
            for k in range(len(tests) - 1):
                state = progress[k] if k < len(progress) else 0
                if state == SHM_PASSED:
                    _set(entries[k], (PASSED, None, ""))
                elif state == SHM_RUNNING:
                    _set(entries[k], failure)
            _set(entries[-1], failure)
        elif phase not in transcript.results:
            _set(entries[phase], abnormal(end, tests[phase], limits))
        else:
            # Every test that started has reported but the end record never came: the job left
            # (or was stopped) in between, which cannot be a pass.
            if all(e["status"] in (PASSED, NOT_RUN) for e in entries):
                program = program or abnormal(end, "the job", limits)

    if program is not None:
        outcome, error_type, feedback = program
    else:
        first = next((e for e in entries if e["status"] not in (PASSED, NOT_RUN)), None)
        if first is not None:
            outcome, error_type, feedback = first["status"], first["error_type"], first["feedback"]
        elif (
            fmt == "check"
            and entries[-1]["status"] == PASSED
            or all(e["status"] == PASSED for e in entries)
        ):
            outcome, error_type, feedback = PASSED, None, ""
        else:
            outcome, error_type, feedback = (
                ERROR,
                "HarnessTampering",
                ("HarnessTampering: the program interfered with the test harness (tests missing)"),
            )
    forgery = transcript.forgery
    if forgery is None and end["kind"] == "tampered":
        forgery = TAMPERING
    return {
        "outcome": outcome,
        "error_type": error_type,
        "feedback": feedback,
        "forgery": forgery,
        "test_results": entries,
    }

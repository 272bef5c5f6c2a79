"""The judge's side of a job: run the tests, with the program's functions as proxies.

Runs in the judge's zygote (its own uid, its own sandbox; see :mod:`judge`). The program runs in
another process and another sandbox; the only thing between the two is the job's channel
(:mod:`channel`). Calling a proxy sends the arguments as plain data (:mod:`wire`), waits for the
answer, decodes it strictly and returns a fresh value of a base type, so every comparison of a
test happens here, between values the program cannot reach. Arguments the program changed come
back and are updated in place.

A non-data answer (an object, a lying ``__eq__``) fails the assertion that asked for it, with
``OUTPUT: <object of type Foo, not comparable as data>``; an answer that breaks the protocol
(wrong token, out of order, malformed) ends the job as tampering. Both are reported as forgery.
Records go to the transcript (:mod:`verdict`), which assembles the verdict; deadlines are a
SIGALRM timer re-armed at each test.
"""

from __future__ import annotations

import signal
import time

import harness
from channel import (
    NAME_CHARS,
    Channel,
    NotDataResult,
    ProgramExit,
    ProgramGone,
    Proxy,
    Tampered,
    rebuild,
)
from harness import (
    EARLY_EXIT,
    ERROR,
    FAILED,
    PASSED,
    RESOURCE_LIMIT,
    SHM_PASSED,
    SHM_RUNNING,
    SYNTAX_ERROR,
    Plan,
    assertion_feedback,
    cut,
    exception_line,
    exception_name,
    safe_repr,
)

# How a judging ended: every test judged (or the program failed to load, or broke the protocol);
# the program's end of the channel closed (its zygote says how the program ended); out of time.
DONE = "done"
GONE = "gone"
TIMEOUT = "timeout"
WALL = "wall"
LOAD_STATUSES = frozenset({SYNTAX_ERROR, RESOURCE_LIMIT})


# --------------------------------------------------------------------------- records


class Deadline(BaseException):
    """A test (or the job) ran out of time; raised by SIGALRM wherever the judge is, a blocking
    read of the channel included."""


def _on_alarm(_signum, _frame) -> None:
    raise Deadline


class Emitter:
    """Hands records to the judge's zygote (the transcript) and keeps the deadline of the phase
    that began last: the per-test timeout, capped by the job's wall clock."""

    def __init__(self, take, token: str, timeout: float, wall_deadline: float) -> None:
        self.take = take
        self.token = token
        self.timeout = timeout
        self.wall_deadline = wall_deadline

    def __call__(self, **record: object) -> None:
        if record["ev"] == "phase":
            now = record["t"]
            left = min(now + self.timeout, self.wall_deadline) - now
            # Again every 50 ms after the first: test code with a bare except cannot swallow it.
            signal.setitimer(signal.ITIMER_REAL, max(left, 1e-6), 0.05)
        record["tok"] = self.token
        self.take(record)


# --------------------------------------------------------------------------- judging


class Hooks:
    """The functions rewritten assertions call, bound to one job."""

    def __init__(self, plan: Plan, shm) -> None:
        self.plan = plan
        self.shm = shm
        self.shm_size = len(shm) if shm is not None else 0
        self.captured: dict[int, object] = {}
        self.raised: BaseException | None = None
        self.failed_site = -1
        self.feedback = ""
        self.current = -1  # the assertion running now (check: announced by at())

    def at(self, k: int) -> None:
        self.current = k
        if k < self.shm_size:
            self.shm[k] = SHM_RUNNING

    def _passed(self, k: int) -> None:
        if self.plan.format == "check" and k < self.shm_size:
            self.shm[k] = SHM_PASSED

    def _fail(self, k: int, input_src: str, output: str, expected: str) -> None:
        exc = AssertionError()
        self.raised = exc
        self.failed_site = k
        self.feedback = assertion_feedback(input_src, output, expected)
        raise exc

    def eq(self, k: int, left: object, right: object) -> None:
        if left == right:
            self._passed(k)
            return
        self._fail(k, self.plan.sites[k].input, safe_repr(left), safe_repr(right))

    def is_(self, k: int, left: object, right: object) -> None:
        if left is right:
            self._passed(k)
            return
        self._fail(k, self.plan.sites[k].input, safe_repr(left), safe_repr(right))

    def true(self, k: int, value: object) -> None:
        if value:
            self._passed(k)
            return
        site = self.plan.sites[k]
        output = self.captured.get(k, value)
        self._fail(k, site.input, safe_repr(output), site.expected)

    def cap(self, k: int, value: object) -> object:
        self.captured[k] = value
        return value

    def not_data(self, exc: NotDataResult) -> str:
        """The feedback of an assertion whose call answered with a non-data value."""
        k = self.current
        if not 0 <= k < len(self.plan.sites):
            return assertion_feedback("", exc.output, "")
        site = self.plan.sites[k]
        self.failed_site = k
        return assertion_feedback(site.input or "", exc.output, site.expected_src)


def classify(exc: BaseException, hooks: Hooks, memory_mb: int) -> tuple[str, str, str]:
    """(status, error type, feedback) for an exception that ended a test or the program."""
    if exc is hooks.raised:
        return FAILED, "AssertionError", hooks.feedback
    if isinstance(exc, NotDataResult):
        return FAILED, "AssertionError", hooks.not_data(exc)
    cls = type(exc)
    name = exception_name(exc, qualified=False)
    if issubclass(cls, SystemExit):
        code = exc.code_repr if isinstance(exc, ProgramExit) else safe_repr(exc.code)
        return (
            EARLY_EXIT,
            "SystemExit",
            f"SystemExit: the program exited ({cut(code)}) before the tests finished",
        )
    if issubclass(cls, MemoryError):
        return (
            RESOURCE_LIMIT,
            "MemoryError",
            f"MemoryError: memory limit of {memory_mb} MiB exceeded",
        )
    if issubclass(cls, OSError) and getattr(exc, "errno", None) in harness.RESOURCE_ERRNOS:
        return RESOURCE_LIMIT, name, exception_line(exc)
    if issubclass(cls, AssertionError):
        return FAILED, "AssertionError", exception_line(exc)
    return ERROR, name, exception_line(exc)


def _test_globals(plan: Plan, hooks: Hooks, channel: Channel, names: list) -> dict:
    scope = dict(harness.PRELUDE_NAMES)
    for name in names:
        if type(name) is not str or not name.isidentifier() or len(name) > NAME_CHARS:
            raise Tampered("a malformed load record")
        if name == plan.entry_point or name not in harness.PROTECTED:
            scope[name] = Proxy(channel, name)
    scope["__builtins__"] = harness.PRISTINE_BUILTINS
    scope["__name__"] = "__test__"
    scope["__persd_at__"] = hooks.at
    scope["__persd_eq__"] = hooks.eq
    scope["__persd_is__"] = hooks.is_
    scope["__persd_true__"] = hooks.true
    scope["__persd_cap__"] = hooks.cap
    return scope


def run(plan: Plan, job: dict, channel_fd: int, take, shm, started: float) -> str:
    """Judge one job in this process, handing records to ``take``; returns how it ended."""
    limits = job["limits"]
    wall_deadline = started + float(limits["max_job_s"])
    emit = Emitter(take, job["token"], float(limits["timeout_s"]), wall_deadline)
    # A line of JSON cannot be larger than the memory the program had to build it in; a quarter
    # of it leaves the judge (with the same limit) room to decode.
    channel = Channel(channel_fd, job["token"], emit, limits["memory_mb"] * 1024 * 1024 // 4)
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    try:
        try:
            _judge(plan, job, channel, emit, shm)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except Tampered as exc:
        emit(ev="tamper", reason=str(exc))
    except ProgramGone:
        return GONE
    except Deadline:
        return WALL if time.monotonic() >= wall_deadline else TIMEOUT
    finally:
        signal.signal(signal.SIGALRM, previous)
    return DONE


def _judge(plan: Plan, job: dict, channel: Channel, emit: Emitter, shm) -> None:
    hooks = Hooks(plan, shm)
    memory_mb = job["limits"]["memory_mb"]
    emit(ev="phase", k=-1, t=time.monotonic())
    channel.send({"code": job["code"], "tok": job["token"], "entry": plan.entry_point,
                  "memory_mb": memory_mb})  # fmt: skip
    try:
        loaded = channel.read()
    except MemoryError:
        feedback = f"MemoryError: memory limit of {memory_mb} MiB exceeded"
        emit(ev="program", status=RESOURCE_LIMIT, error_type="MemoryError", feedback=feedback)
        emit(ev="done")
        return
    event = loaded.get("ev")
    if event == "program":
        status, etype, feedback = (loaded.get(k) for k in ("status", "error_type", "feedback"))
        if status not in LOAD_STATUSES or type(etype) is not str or type(feedback) is not str:
            raise Tampered("an unexpected program record")
        emit(ev="program", status=status, error_type=etype, feedback=feedback)
        emit(ev="done")
        return
    if event == "raised":
        status, etype, feedback = classify(rebuild(loaded.get("exc")), hooks, memory_mb)
        emit(ev="program", status=status, error_type=etype, feedback=feedback)
        emit(ev="done")
        return
    names = loaded.get("names")
    if event != "loaded" or type(names) is not list:
        raise Tampered("an unexpected program record")
    scope = _test_globals(plan, hooks, channel, names)
    if plan.format == "check":
        _run_check(plan, scope, hooks, emit, memory_mb)
    else:
        for k, unit in enumerate(plan.units):
            emit(ev="phase", k=k, t=time.monotonic())
            hooks.current = k
            try:
                exec(unit, scope)
            except (Tampered, ProgramGone, Deadline):
                raise
            except BaseException as exc:  # noqa: BLE001 - every failure of a test is a verdict
                status, error_type, feedback = classify(exc, hooks, memory_mb)
                emit(ev="test", k=k, status=status, error_type=error_type, feedback=feedback)
            else:
                emit(ev="test", k=k, status=PASSED)
    emit(ev="done")


def _run_check(plan: Plan, scope: dict, hooks: Hooks, emit: Emitter, memory_mb: int) -> None:
    final = len(plan.tests) - 1
    emit(ev="phase", k=final, t=time.monotonic())
    failure = None
    failed_site = -1
    try:
        exec(plan.units[0], scope)
        check = scope.get(plan.check_name)
        if plan.entry_point not in scope:
            raise NameError(f"name {plan.entry_point!r} is not defined")
        check(scope[plan.entry_point])
    except (Tampered, ProgramGone, Deadline):
        raise
    except BaseException as exc:  # noqa: BLE001 - every failure of check is a verdict
        failure = classify(exc, hooks, memory_mb)
        if exc is hooks.raised or isinstance(exc, NotDataResult):
            failed_site = hooks.failed_site
    # The shared page says which assertions ran and passed; a failure that escaped check is pinned
    # on the assertion that raised it, or (an error between assertions) on check itself only.
    items = []
    for k in range(final):
        state = hooks.shm[k] if k < hooks.shm_size else 0
        pinned = k == failed_site or (failed_site == -1 and state == SHM_RUNNING)
        if failure is not None and pinned:
            items.append(
                {"k": k, "status": failure[0], "error_type": failure[1], "feedback": failure[2]}
            )
        elif state:
            items.append({"k": k, "status": PASSED})
    if failure is None:
        items.append({"k": final, "status": PASSED})
    else:
        items.append(
            {"k": final, "status": failure[0], "error_type": failure[1], "feedback": failure[2]}
        )
    emit(ev="tests", items=items)

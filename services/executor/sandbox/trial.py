"""The judge's side of a job: run the tests, with the program's functions as proxies.

Runs in the judge's zygote (its own uid, its own sandbox; see :mod:`judge`). The program runs in another process and another sandbox; the only thing between
the two is the job's channel, a socket pair that carries JSON lines. Calling a proxy sends the
arguments as plain data (:mod:`wire`), waits for the answer, decodes it strictly and returns a
fresh value of a base type, so every comparison of a test happens here, between values the
program cannot reach. Arguments the program changed come back and are updated in place.

A non-data answer (an object, a lying ``__eq__``) fails the assertion that asked for it, with
``OUTPUT: <object of type Foo, not comparable as data>``; an answer that breaks the protocol
(wrong token, out of order, malformed) ends the job as tampering. Both are reported as forgery.
Records go to the transcript (:mod:`verdict`), which assembles the verdict; deadlines are a
SIGALRM timer re-armed at each test.
"""

from __future__ import annotations

import os
import signal
import time

import harness
import wire
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
NAME_CHARS = 200
REBUILT_CLASSES = 1000
# Under malloc's mmap threshold: a 1 MiB read buffer costs an mmap and page faults per call.
READ_BYTES = 64 * 1024
LOAD_STATUSES = frozenset({SYNTAX_ERROR, RESOURCE_LIMIT})
_MUTABLE = (list, dict, set) + ((wire._np.ndarray,) if wire._np is not None else ())


class Tampered(BaseException):
    """The program broke the channel's protocol (BaseException: test code cannot catch it)."""


class NotDataResult(BaseException):
    """The program answered with something that is not data."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.output = f"<object of type {kind}, not comparable as data>"


class ProgramExit(SystemExit):
    """``SystemExit`` raised in the program, raised again here with its code's repr."""

    def __init__(self, code_repr: str) -> None:
        super().__init__(code_repr)
        self.code_repr = code_repr


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


# --------------------------------------------------------------------------- the channel


def _message_str(self) -> str:
    return self.persd_message


_REBUILT: dict[tuple, type] = {}


def rebuild(info: object) -> BaseException:
    """The program's exception as an exception of the judge, of the same name and builtin base
    (so ``except ValueError`` in a check works), with the program's message."""
    if type(info) is not dict:
        raise Tampered("a malformed exception")
    name, module, base, message = (info.get(k) for k in ("name", "module", "base", "msg"))
    if not all(type(v) is str and len(v) <= NAME_CHARS for v in (name, module, base)):
        raise Tampered("a malformed exception")
    if type(message) is not str:
        raise Tampered("a malformed exception")
    if base == "SystemExit":
        code = info.get("code")
        return ProgramExit(code if type(code) is str else "None")
    base_cls = harness.PRISTINE_BUILTINS.get(base)
    if not (isinstance(base_cls, type) and issubclass(base_cls, BaseException)):
        base_cls = Exception
    try:
        exc = _instance(base_cls, name, module)
    except (TypeError, ValueError):  # a base that needs arguments, a name with a NUL in it
        try:
            exc = _instance(Exception, name, module)
        except (TypeError, ValueError):
            raise Tampered("a malformed exception") from None
    exc.args = (message,)
    exc.persd_message = message
    errno = info.get("errno")
    if type(errno) is int and isinstance(exc, OSError):
        exc.errno = errno
    return exc


def _instance(base: type, name: str, module: str) -> BaseException:
    key = (base, name, module)
    cls = _REBUILT.get(key)
    if cls is None:
        if len(_REBUILT) > REBUILT_CLASSES:
            _REBUILT.clear()  # a program can name any number of classes
        namespace = {"__module__": module, "__qualname__": name, "__str__": _message_str}
        cls = type(name.rpartition(".")[2] or "Exception", (base,), namespace)
        _REBUILT[key] = cls
    return cls.__new__(cls)


class Channel:
    def __init__(self, fd: int, token: str, emit: Emitter, max_line: int) -> None:
        self.fd = fd
        self.token = token
        self.emit = emit
        self.max_line = max_line
        self.buffer = b""
        self.seq = 0
        self.flagged = False

    def send(self, message: dict) -> None:
        data = memoryview((wire.dumps(message) + "\n").encode())
        try:
            while data:
                data = data[os.write(self.fd, data) :]
        except OSError:
            raise ProgramGone from None

    def read(self) -> dict:
        end = self.buffer.find(b"\n")
        if end < 0:
            chunks = [self.buffer]  # joined once: a long line must not cost a copy per chunk
            while end < 0:
                try:
                    chunk = os.read(self.fd, READ_BYTES)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise ProgramGone
                end = chunk.find(b"\n")
                if end >= 0:
                    end += sum(len(c) for c in chunks)
                chunks.append(chunk)
                if end < 0 and len(chunks) * READ_BYTES > self.max_line:
                    # More than the program could honestly build in its memory limit; the
                    # judge must not run out of memory reading it.
                    raise MemoryError
            self.buffer = b"".join(chunks)
        line, self.buffer = self.buffer[:end], self.buffer[end + 1 :]
        try:
            message = wire.loads(line)
        except wire.Malformed:
            raise Tampered("a malformed record") from None
        if type(message) is not dict or message.get("tok") != self.token:
            raise Tampered("a record without the job's token")
        return message

    def not_data(self, kind: object) -> NotDataResult:
        if not self.flagged:
            self.flagged = True
            self.emit(ev="forgery", kind="non_data")
        return NotDataResult(cut(kind if type(kind) is str else "object")[:NAME_CHARS])

    def call(self, name: str, args: tuple, kwargs: dict) -> object:
        self.seq += 1
        try:
            encoded = {"seq": self.seq, "fn": name, "a": wire.encode(list(args)),
                       "k": wire.encode(kwargs)}  # fmt: skip
        except wire.NotData as exc:
            raise TypeError(f"{name}() got an argument that is not data ({exc.kind})") from None
        self.send(encoded)
        reply = self.read()
        if reply.get("seq") != self.seq:
            raise Tampered("a reply out of order")
        if "exc" in reply:
            raise rebuild(reply["exc"])
        if "nd" in reply:
            raise self.not_data(reply["nd"])
        if "ret" not in reply:
            raise Tampered("a reply without a value")
        try:
            value = wire.decode(reply["ret"])
            changed = [(key, wire.decode(v)) for key, v in _pairs(reply.get("m", []))]
        except (wire.Malformed, RecursionError):
            raise Tampered("a malformed value") from None
        for key, new in changed:
            old = args[key] if type(key) is int and 0 <= key < len(args) else kwargs.get(key)
            _refill(old, new)
        return value


class ProgramGone(BaseException):
    """The program's end of the channel closed: the program ended."""


def _pairs(items: object) -> list:
    if type(items) is not list or not all(type(p) is list and len(p) == 2 for p in items):
        raise Tampered("a malformed value")
    return items


def _refill(old: object, new: object) -> None:
    """Update an argument in place with what the program made of it."""
    if not isinstance(old, _MUTABLE):
        raise Tampered("a change to an argument it was not given")
    if isinstance(old, list) and type(new) is list:
        old[:] = new
    elif (isinstance(old, dict) and type(new) is dict) or (
        isinstance(old, set) and type(new) is set
    ):
        old.clear()
        old.update(new)
    elif wire._np is not None and isinstance(old, wire._np.ndarray):
        if not isinstance(new, wire._np.ndarray) or new.shape != old.shape:
            raise Tampered("an argument of another shape")
        old[...] = new
    else:
        raise Tampered("an argument of another type")


class Proxy:
    """A function of the program, called across the channel."""

    __slots__ = ("channel", "__name__", "__qualname__")

    def __init__(self, channel: Channel, name: str) -> None:
        self.channel = channel
        self.__name__ = self.__qualname__ = name

    def __call__(self, *args, **kwargs):
        return self.channel.call(self.__name__, args, kwargs)

    def __repr__(self) -> str:
        return f"<function {self.__name__}>"


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

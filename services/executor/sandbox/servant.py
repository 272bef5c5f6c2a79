"""The program's side of a job: load the program, then answer the judge's calls, nothing else.

Runs in the job process after confinement. The judge (another process, another uid, holding the
tests and the expected values) sends one JSON line per call, ``{"seq": n, "fn": name, "a": args,
"k": kwargs}``; the servant calls the program's function and answers with plain data
(:mod:`wire`): the return value, the arguments it may have mutated, or the exception it raised.
Everything here lives in the program's memory and the program may rewrite it: that is fine,
because all it can ever send is data, which the judge decodes strictly and compares itself.

The first line from the judge is the job: ``{"code": ..., "tok": ..., "entry": ...}``; the
first line back says how loading went. End of the channel ends the job.
"""

from __future__ import annotations

import builtins
import os
import sys
import types

# Bound at import, before the program runs: it may rebind these in builtins.
from builtins import (  # noqa: A004, UP029
    BaseException,
    MemoryError,
    OSError,
    SystemExit,
    callable,
    compile,
    dict,
    enumerate,
    exec,
    getattr,
    isinstance,
    len,
    list,
    next,
    str,
    sum,
    type,
)

import harness
import wire

# Exit status of a job whose channel to the judge was closed or replaced under it.
CHANNEL_LOST = 113
MAX_NAMES = 1000
# Under malloc's mmap threshold: a 1 MiB read buffer costs an mmap and page faults per call.
READ_BYTES = 64 * 1024
MESSAGE_CHARS = 100_000  # of an exception's message: feedback keeps 50 words, 300 characters

# Arguments that a call may change in place, sent back so that in-place tasks still work.
_STREAMS = (sys.stdout, sys.stderr)  # the originals: the program may replace sys.stdout
_MUTABLE = (list, dict, set) + ((wire._np.ndarray,) if wire._np is not None else ())


class _Channel:
    """JSON lines over the job's socket to the judge. A forked copy of the program that unwinds
    into this code (``os.fork()`` in the program) must not speak for it: it leaves silently."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pid = os.getpid()
        self.buffer = b""

    def read(self) -> dict:
        end = self.buffer.find(b"\n")
        if end < 0:
            chunks = [self.buffer]  # joined once: a long line must not cost a copy per chunk
            while end < 0:
                try:
                    chunk = os.read(self.fd, READ_BYTES)
                except OSError:
                    self.lost()
                if not chunk:
                    os._exit(0)  # the judge is done with us
                end = chunk.find(b"\n")
                if end >= 0:
                    end += sum(len(c) for c in chunks)
                chunks.append(chunk)
            self.buffer = b"".join(chunks)
        line, self.buffer = self.buffer[:end], self.buffer[end + 1 :]
        return wire.loads(line)

    def send(self, message: dict) -> None:
        if os.getpid() != self.pid:
            os._exit(0)
        # What the program printed so far, before the judge may end the job.
        for stream in _STREAMS:
            try:  # noqa: SIM105 - contextlib.suppress looks up issubclass in builtins
                stream.flush()
            except BaseException:  # noqa: BLE001, S110
                pass
        data = memoryview((wire.dumps(message) + "\n").encode())
        try:
            while data:
                data = data[os.write(self.fd, data) :]
        except OSError:
            self.lost()

    def lost(self) -> None:
        if os.getpid() != self.pid:
            os._exit(0)
        os._exit(CHANNEL_LOST)


def describe(exc: BaseException) -> dict:
    """An exception as data, for the judge to raise again on its side."""
    cls = type(exc)
    base = next((c.__name__ for c in cls.__mro__ if c.__module__ == "builtins"), "Exception")
    info = {
        "name": harness.exception_name(exc, qualified=False),
        "module": getattr(cls, "__module__", "builtins"),
        "base": base,
    }
    if not isinstance(info["module"], str):
        info["module"] = "builtins"
    try:
        info["msg"] = str(exc)[:MESSAGE_CHARS]
    except BaseException:  # noqa: BLE001 - a hostile __str__
        info["msg"] = "<str() of the exception failed>"
    if isinstance(exc, SystemExit):
        info["code"] = harness.safe_repr(getattr(exc, "code", None))[:MESSAGE_CHARS]
    if isinstance(exc, OSError):
        errno = getattr(exc, "errno", None)
        info["errno"] = errno if type(errno) is int else None
    return info


def _encoded(value: object) -> dict:
    try:
        return {"ret": wire.encode(value)}
    except wire.NotData as exc:
        return {"nd": exc.kind[:200]}
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - a value whose own methods fail is not data
        return {"nd": f"{type(exc).__name__} while reading it"}


def _program_names(program: dict, entry: str) -> list[str]:
    prelude = harness.PRELUDE_NAMES
    names = [
        name
        for name, value in program.items()
        if not name.startswith("__")
        and callable(value)
        and (name == entry or (name not in prelude or value is not prelude[name]))
    ]
    return names[:MAX_NAMES]


def serve(fd: int) -> None:
    """Run the job; never returns."""
    channel = _Channel(fd)
    job = channel.read()
    token = job["tok"]
    memory_mb = job["memory_mb"]
    # A real module, registered: multiprocessing must be able to pickle the program's functions
    # by reference (solution.square), as it does for any imported module.
    module = types.ModuleType("solution")
    sys.modules["solution"] = module
    program = module.__dict__
    program["__builtins__"] = builtins
    program.update(harness.PRELUDE_NAMES)
    try:
        code = compile(job["code"], "<program>", "exec", dont_inherit=True)
    except MemoryError:
        feedback = f"MemoryError: memory limit of {memory_mb} MiB exceeded"
        channel.send({"tok": token, "ev": "program", "status": harness.RESOURCE_LIMIT,
                      "error_type": "MemoryError", "feedback": feedback})  # fmt: skip
        _idle(channel)
    except BaseException as exc:  # noqa: BLE001 - every way compile fails is a syntax error
        channel.send({"tok": token, "ev": "program", "status": harness.SYNTAX_ERROR,
                      "error_type": harness.exception_name(exc, False),
                      "feedback": harness.syntax_feedback(exc)})  # fmt: skip
        _idle(channel)
    try:
        exec(code, program)
    except BaseException as exc:  # noqa: BLE001 - the judge classifies it
        channel.send({"tok": token, "ev": "raised", "exc": describe(exc)})
        _idle(channel)
    entry = job["entry"]
    channel.send({"tok": token, "ev": "loaded", "names": _program_names(program, entry)})
    while True:
        call = channel.read()
        channel.send(_answer(program, call) | {"tok": token, "seq": call["seq"]})


def _idle(channel: _Channel) -> None:
    """After a failed load: wait for the judge to hang up."""
    while True:
        channel.read()


def _answer(program: dict, call: dict) -> dict:
    try:
        args = wire.decode(call["a"])
        kwargs = wire.decode(call["k"])
        function = program[call["fn"]]
        value = function(*args, **kwargs)
        reply = _encoded(value)
        try:
            changed = [[i, wire.encode(a)] for i, a in enumerate(args) if isinstance(a, _MUTABLE)]
            changed += [[k, wire.encode(v)] for k, v in kwargs.items() if isinstance(v, _MUTABLE)]
        except wire.NotData as exc:  # the program put a non-data object into an argument
            return {"nd": exc.kind[:200]}
        if changed:
            reply["m"] = changed
        return reply
    except BaseException as exc:  # noqa: BLE001 - the judge raises it again on its side
        try:
            return {"exc": describe(exc)}
        except MemoryError:
            return {"exc": {"name": "MemoryError", "module": "builtins", "base": "MemoryError",
                            "msg": ""}}  # fmt: skip

"""The judge's end of a job's channel: calls to the program as plain data, and the program's
answers decoded strictly into values of base types (:mod:`wire`).

The channel is a socket pair carrying JSON lines. A call is ``{"seq", "fn", "a", "k"}``; an
answer carries the job's token and the call's ``seq`` and one of ``ret`` (the value, with ``m``:
the arguments the program changed), ``nd`` (not data) or ``exc`` (the exception it raised, raised
again here). Anything else is :class:`Tampered`.
"""

from __future__ import annotations

import os

import harness
import wire
from harness import cut

NAME_CHARS = 200
REBUILT_CLASSES = 1000
# Under malloc's mmap threshold: a 1 MiB read buffer costs an mmap and page faults per call.
READ_BYTES = 64 * 1024
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
    def __init__(self, fd: int, token: str, emit, max_line: int) -> None:
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

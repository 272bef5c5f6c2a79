"""The test harness: turns a suite into compiled test units, runs a program and its tests inside a
job, and writes the PERsD feedback text. Stdlib only; imported once by the zygote.

Plans (:func:`build_plan`) are built in the zygote from trusted test source, before any job code
exists. :func:`run_job` runs in the job process after confinement; everything it needs from
builtins is captured at import, so a program that rebinds ``builtins.AssertionError``, ``repr``,
``isinstance`` or ``print`` changes nothing about how its tests are judged. Tests also get their
own globals: the program's names, except that builtins and the prelude's names come from pristine
copies, so ``builtins.abs = lambda x: 0`` or a program-level ``def sorted(x)`` cannot make a test
pass (the entry point itself is always the program's).

Every ``assert`` in a test is rewritten into a call to a hook (``assert f(1) == 2`` becomes
``__persd_eq__(k, f(1), 2)``) so that both sides are evaluated once, separately, in the original
order, and a failure can report INPUT, OUTPUT and EXPECTED.
"""

from __future__ import annotations

import ast
import builtins
import copy
import errno
import json
import os
import sys
import time
import types

PRELUDE = """\
import math
import re
import sys
import copy
import datetime
import itertools
import collections
import heapq
import statistics
import functools
import hashlib
import numpy
import numpy as np
import string
from typing import *
from collections import *
"""

# Per-test statuses (the host's services.executor.schemas.TestStatus has the same values).
PASSED = "passed"
FAILED = "failed"
ERROR = "error"
SYNTAX_ERROR = "syntax_error"
TIMEOUT = "timeout"
RESOURCE_LIMIT = "resource_limit"
EARLY_EXIT = "early_exit"
NOT_RUN = "not_run"

# Progress bytes in the shared page (check format): which assertions ran and which passed.
SHM_RUNNING = 1
SHM_PASSED = 2

# Exit status of a job whose record channel was closed or replaced under the harness.
CHANNEL_LOST = 113

FEEDBACK_WORDS = 50  # the reference implementation cut INPUT/OUTPUT/EXPECTED to 50 words
FEEDBACK_CHARS = 300  # and a long word (a 10^6-character string) must not slip through

# Originals, captured before any job code runs.
_AssertionError = AssertionError
_BaseException = BaseException
_SystemExit = SystemExit
_MemoryError = MemoryError
_OSError = OSError
_SyntaxError = SyntaxError
_RecursionError = RecursionError
_NameError = NameError
_repr = repr
_str = str
_type = type
_isinstance = isinstance
_issubclass = issubclass
_len = len
_compile = compile
_exec = exec
_getpid = os.getpid
_monotonic = time.monotonic
_write = os.write
_exit = os._exit
_escape = json.encoder.encode_basestring_ascii  # the C function: no Python-level lookups
_int = int
_int_repr = int.__repr__
_list = list
_float = float
_float_repr = float.__repr__
_dict = dict
_range = range
_enumerate = enumerate
_getattr = getattr
_stdout = sys.stdout
_stderr = sys.stderr
_RESOURCE_ERRNOS = frozenset({errno.EFBIG, errno.ENOSPC, errno.EMFILE, errno.ENFILE, errno.EAGAIN})
_UNQUALIFIED_MODULES = frozenset({"builtins", "__main__", "solution"})

_PRISTINE_BUILTINS = dict(builtins.__dict__)
_PRELUDE_NS: dict = {}
exec(compile(PRELUDE, "<prelude>", "exec"), _PRELUDE_NS)  # the expensive imports, once per zygote
del _PRELUDE_NS["__builtins__"]
_PROTECTED = frozenset(_PRISTINE_BUILTINS) | frozenset(_PRELUDE_NS)

HOOKS = ("__persd_at__", "__persd_eq__", "__persd_is__", "__persd_true__", "__persd_cap__")


class InvalidTests(ValueError):
    """The test suite cannot be turned into a plan (the host validates first; this is a guard)."""


# --------------------------------------------------------------------------- feedback text


def cut(text: str) -> str:
    words = text.split()
    if _len(words) > FEEDBACK_WORDS:
        text = " ".join(words[:FEEDBACK_WORDS]) + " ..."
    if _len(text) > FEEDBACK_CHARS:
        text = text[:FEEDBACK_CHARS] + " ..."
    return text


def safe_repr(value: object) -> str:
    try:
        text = _repr(value)
    except _BaseException as exc:  # a hostile or broken __repr__ is feedback, not a crash
        return f"<repr failed: {exception_line(exc)}>"
    return text if _type(text) is _str else "<repr returned a non-string>"


def exception_name(exc: BaseException, qualified: bool = True) -> str:
    cls = _type(exc)
    try:
        name = cls.__qualname__
        module = cls.__module__
    except _BaseException:
        return "Exception"
    if not _isinstance(name, _str):
        return "Exception"
    if qualified and _isinstance(module, _str) and module not in _UNQUALIFIED_MODULES:
        return f"{module}.{name}"
    return name


def exception_line(exc: BaseException) -> str:
    """The last line of the traceback Python would print: ``NameError: name 'x' is not defined``."""
    name = exception_name(exc)
    try:
        message = _str(exc)
    except _BaseException:
        message = "<str() of the exception failed>"
    return cut(f"{name}: {message}" if message else name)


def assertion_feedback(input_src: str, output: str, expected: str) -> str:
    return (
        f"AssertionError\nINPUT: {cut(input_src)}\nOUTPUT: {cut(output)}\nEXPECTED: {cut(expected)}"
    )


def syntax_feedback(exc: BaseException) -> str:
    name = exception_name(exc, qualified=False)
    if not _isinstance(exc, _SyntaxError):
        return exception_line(exc)
    head = f"{name}: {exc.msg} (line {exc.lineno})"
    text = (exc.text or "").strip()
    return f"{head}\n    {cut(text)}" if text else head


def timeout_feedback(what: str, seconds: float) -> str:
    return f"TimeoutError: {cut(what)} did not finish within {seconds:g} s"


# --------------------------------------------------------------------------- plans


class AssertSite:
    """One ``assert`` statement of a test: what to show as INPUT and, for assertions that are not a
    plain comparison, what was expected to hold."""

    __slots__ = ("source", "input", "expected")

    def __init__(self, source: str, input_src: str | None, expected: str | None) -> None:
        self.source = source
        self.input = input_src
        self.expected = expected


class Plan:
    """A suite compiled for one entry point; shared read-only by every job of the zygote."""

    def __init__(self, fmt: str, tests: list[str], units: list, sites: list[AssertSite]) -> None:
        self.format = fmt
        self.tests = tests  # display text of each result entry, in order
        self.units = units  # code objects: one per test (asserts, io) or the check module
        self.sites = sites  # indexed by the k passed to the hooks
        self.check_name = "check"
        self.entry_point = ""


class _Rename(ast.NodeTransformer):
    def __init__(self, names: dict[str, str]) -> None:
        self.names = names

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in self.names:
            return ast.copy_location(ast.Name(id=self.names[node.id], ctx=node.ctx), node)
        return node


class _Capture(ast.NodeTransformer):
    """Wraps the first call of the function under test in ``__persd_cap__(k, call)``."""

    def __init__(self, k: int, callees: set[str]) -> None:
        self.k = k
        self.callees = callees
        self.found: ast.Call | None = None

    def visit_Call(self, node: ast.Call) -> ast.AST:
        if self.found is None and _isinstance(node.func, ast.Name) and node.func.id in self.callees:
            self.found = node
            return ast.Call(
                func=ast.Name(id="__persd_cap__", ctx=ast.Load()),
                args=[ast.Constant(self.k), node],
                keywords=[],
            )
        return self.generic_visit(node)


class _AssertRewriter(ast.NodeTransformer):
    """Replaces each ``assert`` with hook calls; records an :class:`AssertSite` per assertion."""

    def __init__(
        self, callees: set[str], rename: dict[str, str], track: bool, first: int = 0
    ) -> None:
        self.first = first  # k of the first assertion (asserts/io plans number across tests)
        self.callees = callees
        self.rename = rename
        self.track = track  # check format: announce each assertion in the shared page
        self.sites: list[AssertSite] = []

    def show(self, node: ast.AST) -> str:
        return ast.unparse(_Rename(self.rename).visit(copy.deepcopy(node)))

    def visit_Assert(self, node: ast.Assert) -> list[ast.stmt]:
        k = self.first + _len(self.sites)
        test = node.test
        if (
            _isinstance(test, ast.Compare)
            and _len(test.ops) == 1
            and _isinstance(test.ops[0], (ast.Eq, ast.Is))
        ):
            hook = "__persd_eq__" if _isinstance(test.ops[0], ast.Eq) else "__persd_is__"
            site = AssertSite(f"assert {self.show(test)}", self.show(test.left), None)
            args = [ast.Constant(k), test.left, test.comparators[0]]
        else:
            capture = _Capture(k, self.callees)
            shown = self.show(test)
            new_test = capture.visit(copy.deepcopy(test))
            if capture.found is None:
                site = AssertSite(f"assert {shown}", shown, "True")
            else:
                call_src = self.show(capture.found)
                if test is capture.found or (
                    _isinstance(test, ast.Call) and self.show(test) == call_src
                ):
                    expected = "True"
                elif (
                    _isinstance(test, ast.UnaryOp)
                    and _isinstance(test.op, ast.Not)
                    and self.show(test.operand) == call_src
                ):
                    expected = "False"
                else:
                    expected = f"{shown} to be true"
                site = AssertSite(f"assert {shown}", call_src, expected)
            hook = "__persd_true__"
            args = [ast.Constant(k), new_test]
        self.sites.append(site)
        call = ast.Expr(ast.Call(func=ast.Name(id=hook, ctx=ast.Load()), args=args, keywords=[]))
        statements: list[ast.stmt] = [call]
        if self.track:
            at = ast.Call(
                func=ast.Name(id="__persd_at__", ctx=ast.Load()),
                args=[ast.Constant(k)],
                keywords=[],
            )
            statements.insert(0, ast.Expr(at))
        for stmt in statements:
            ast.copy_location(stmt, node)
            ast.fix_missing_locations(stmt)
        return statements


def _parse(source: str, what: str, mode: str = "exec") -> ast.AST:
    try:
        return ast.parse(source, mode=mode)
    except (SyntaxError, ValueError) as exc:
        raise InvalidTests(f"{what} is not valid Python: {exc}") from None


def build_plan(suite: dict, entry_point: str) -> Plan:
    fmt = suite.get("format")
    if fmt == "asserts":
        tests, units, sites = [], [], []
        for i, source in enumerate(suite["asserts"]):
            tree = _parse(source, f"test {i}")
            if _len(tree.body) != 1 or not _isinstance(tree.body[0], ast.Assert):
                raise InvalidTests(f"test {i} must be a single assert statement")
            rewriter = _AssertRewriter({entry_point}, {}, track=False, first=i)
            module = ast.Module(body=rewriter.visit(tree.body[0]), type_ignores=[])
            units.append(_compile(module, f"<test {i}>", "exec", dont_inherit=True))
            sites.append(rewriter.sites[0])
            tests.append(source.strip())
        plan = Plan(fmt, tests, units, sites)
    elif fmt == "io":
        tests, units, sites = [], [], []
        for i, case in enumerate(suite["cases"]):
            call = _parse(case["call"], f"case {i} call", "eval").body
            expected = _parse(case["expected"], f"case {i} expected", "eval").body
            node = ast.Assert(
                test=ast.Compare(left=call, ops=[ast.Eq()], comparators=[expected]), msg=None
            )
            ast.fix_missing_locations(ast.copy_location(node, call))
            rewriter = _AssertRewriter({entry_point}, {}, track=False, first=i)
            module = ast.Module(body=rewriter.visit(node), type_ignores=[])
            units.append(_compile(module, f"<case {i}>", "exec", dont_inherit=True))
            sites.append(rewriter.sites[0])
            tests.append(f"{case['call'].strip()} == {case['expected'].strip()}")
        plan = Plan(fmt, tests, units, sites)
    elif fmt == "check":
        tree = _parse(suite["check"], "check")
        check = next(
            (n for n in tree.body if _isinstance(n, ast.FunctionDef) and n.name == "check"), None
        )
        if check is None:
            raise InvalidTests("check must define a function named check(candidate)")
        params = [a.arg for a in check.args.posonlyargs + check.args.args]
        if not params:
            raise InvalidTests("check must take the candidate function as its first parameter")
        rewriter = _AssertRewriter({params[0]}, {params[0]: entry_point}, track=True)
        tree = rewriter.visit(tree)
        ast.fix_missing_locations(tree)
        unit = _compile(tree, "<check>", "exec", dont_inherit=True)
        tests = [site.source for site in rewriter.sites] + [f"check({entry_point})"]
        plan = Plan(fmt, tests, [unit], rewriter.sites)
    else:
        raise InvalidTests(f"unknown test format {fmt!r}")
    plan.entry_point = entry_point
    return plan


# --------------------------------------------------------------------------- running a job


def _dump(value: object) -> str:
    """JSON for records, using only what was captured above: json.dumps itself looks up
    ``isinstance`` in builtins at call time, which a program can replace."""
    kind = _type(value)
    if kind is _str:
        return _escape(value)
    if value is None:
        return "null"
    if kind is _int:
        return _int_repr(value)
    if kind is _float:
        return _float_repr(value)
    if kind is _dict:
        return "{" + ",".join(_escape(k) + ":" + _dump(v) for k, v in value.items()) + "}"
    if kind is _list:
        return "[" + ",".join(_dump(v) for v in value) + "]"
    raise TypeError("unexpected value in a record")


class _Emitter:
    """Writes records to the job's record channel. A forked copy of the job that unwinds into the
    harness (``os.fork()`` in the program, then an exception) must not speak for the job, so
    records from any other pid end that copy silently."""

    def __init__(self, fd: int, token: str) -> None:
        self.fd = fd
        self.token = token
        self.pid = _getpid()

    def __call__(self, **record: object) -> None:
        if _getpid() != self.pid:
            _exit(0)
        record["tok"] = self.token
        data = (_dump(record) + "\n").encode()
        try:
            while data:
                data = data[_write(self.fd, data) :]
        except _BaseException:
            _exit(CHANNEL_LOST)


class _Hooks:
    """The functions rewritten assertions call, bound to one job."""

    def __init__(self, plan: Plan, shm) -> None:
        self.plan = plan
        self.shm = shm
        self.shm_size = _len(shm) if shm is not None else 0
        self.captured: dict[int, object] = {}
        self.raised: BaseException | None = None
        self.failed_site = -1
        self.feedback = ""

    def at(self, k: int) -> None:
        if k < self.shm_size:
            self.shm[k] = SHM_RUNNING

    def _passed(self, k: int) -> None:
        if self.plan.format == "check" and k < self.shm_size:
            self.shm[k] = SHM_PASSED

    def _fail(self, k: int, input_src: str, output: str, expected: str) -> None:
        exc = _AssertionError()
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


def classify(exc: BaseException, hooks: _Hooks, memory_mb: int) -> tuple[str, str, str]:
    """(status, error type, feedback) for an exception that ended a test or the program."""
    if exc is hooks.raised:
        return FAILED, "AssertionError", hooks.feedback
    cls = _type(exc)
    name = exception_name(exc, qualified=False)
    if _issubclass(cls, _SystemExit):
        code = safe_repr(_getattr(exc, "code", None))
        return (
            EARLY_EXIT,
            "SystemExit",
            f"SystemExit: the program exited ({cut(code)}) before the tests finished",
        )
    if _issubclass(cls, _MemoryError):
        return (
            RESOURCE_LIMIT,
            "MemoryError",
            f"MemoryError: memory limit of {memory_mb} MiB exceeded",
        )
    if _issubclass(cls, _OSError):
        try:
            code = exc.errno
        except _BaseException:
            code = None
        if code in _RESOURCE_ERRNOS:
            return RESOURCE_LIMIT, name, exception_line(exc)
    if _issubclass(cls, _AssertionError):
        return FAILED, "AssertionError", exception_line(exc)
    return ERROR, name, exception_line(exc)


def _test_globals(program: dict, plan: Plan, hooks: _Hooks) -> dict:
    names = _dict(_PRELUDE_NS)
    for key, value in program.items():
        if key not in _PROTECTED and not key.startswith("__"):
            names[key] = value
    if plan.entry_point in program:
        names[plan.entry_point] = program[plan.entry_point]
    names["__builtins__"] = _PRISTINE_BUILTINS
    names["__name__"] = "__test__"
    names["__persd_at__"] = hooks.at
    names["__persd_eq__"] = hooks.eq
    names["__persd_is__"] = hooks.is_
    names["__persd_true__"] = hooks.true
    names["__persd_cap__"] = hooks.cap
    return names


def _finish(emit: _Emitter) -> None:
    for stream in (_stdout, _stderr):
        # Not contextlib.suppress: its __exit__ looks up issubclass in builtins at call time.
        try:  # noqa: SIM105
            stream.flush()
        except _BaseException:
            pass
    emit(ev="done")
    _exit(0)


def run_job(plan: Plan, job: dict, fd: int, shm) -> None:
    """Run the program and its tests, streaming records to ``fd``; never returns."""
    emit = _Emitter(fd, job["token"])
    hooks = _Hooks(plan, shm)
    memory_mb = job["limits"]["memory_mb"]
    # A real module, registered: multiprocessing must be able to pickle the program's functions
    # by reference (solution.square), as it does for any imported module.
    module = types.ModuleType("solution")
    sys.modules["solution"] = module
    program = module.__dict__
    program["__builtins__"] = builtins
    program.update(_PRELUDE_NS)

    emit(ev="phase", k=-1, t=_monotonic())
    try:
        code = _compile(job["code"], "<program>", "exec", dont_inherit=True)
    except _MemoryError:
        emit(
            ev="program",
            status=RESOURCE_LIMIT,
            error_type="MemoryError",
            feedback=f"MemoryError: memory limit of {memory_mb} MiB exceeded",
        )
        _finish(emit)
    except _BaseException as exc:
        emit(
            ev="program",
            status=SYNTAX_ERROR,
            error_type=exception_name(exc, False),
            feedback=syntax_feedback(exc),
        )
        _finish(emit)
    try:
        _exec(code, program)
    except _BaseException as exc:
        status, error_type, feedback = classify(exc, hooks, memory_mb)
        emit(ev="program", status=status, error_type=error_type, feedback=feedback)
        _finish(emit)

    names = _test_globals(program, plan, hooks)
    if plan.format == "check":
        _run_check(plan, program, names, hooks, emit, memory_mb)
    else:
        for k, unit in _enumerate(plan.units):
            emit(ev="phase", k=k, t=_monotonic())
            try:
                _exec(unit, names)
            except _BaseException as exc:
                status, error_type, feedback = classify(exc, hooks, memory_mb)
                emit(ev="test", k=k, status=status, error_type=error_type, feedback=feedback)
            else:
                emit(ev="test", k=k, status=PASSED)
    _finish(emit)


def _run_check(plan: Plan, program: dict, names: dict, hooks: _Hooks, emit, memory_mb) -> None:
    final = _len(plan.tests) - 1
    emit(ev="phase", k=final, t=_monotonic())
    failure = None
    failed_site = -1
    try:
        _exec(plan.units[0], names)
        check = names.get(plan.check_name)
        if plan.entry_point not in program:
            raise _NameError(f"name {plan.entry_point!r} is not defined")
        check(program[plan.entry_point])
    except _BaseException as exc:
        failure = classify(exc, hooks, memory_mb)
        failed_site = hooks.failed_site if exc is hooks.raised else -1
    # The shared page says which assertions ran and passed; a failure that escaped check is pinned
    # on the assertion that raised it, or (an error between assertions) on check itself only.
    items = []
    for k in _range(final):
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

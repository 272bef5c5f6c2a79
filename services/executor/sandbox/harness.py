"""The test harness: turns a suite into compiled test units and writes the PERsD feedback text.
Stdlib only; imported once by each zygote.

Plans (:func:`build_plan`) are built in the judge's zygote from trusted test source; they never
exist in the program's memory. :mod:`trial` runs them in the judge process, where the program's
functions are proxies that cross to the program's process as plain data (:mod:`wire`), so
nothing the program does to its own interpreter (builtins, ``gc``, frames) reaches the tests.

Every ``assert`` in a test is rewritten into a call to a hook (``assert f(1) == 2`` becomes
``__persd_eq__(k, f(1), 2)``) so that both sides are evaluated once, separately, in the original
order, and a failure can report INPUT, OUTPUT and EXPECTED.
"""

from __future__ import annotations

import ast
import builtins
import copy
import errno

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

FEEDBACK_WORDS = 50  # the reference implementation cut INPUT/OUTPUT/EXPECTED to 50 words
FEEDBACK_CHARS = 300  # and a long word (a 10^6-character string) must not slip through

# Captured at import: the servant imports this module into the program's process too, where the
# program could rebind builtins before a load error is formatted.
_BaseException = BaseException
_SyntaxError = SyntaxError
_repr = repr
_str = str
_type = type
_isinstance = isinstance
_len = len
_compile = compile
RESOURCE_ERRNOS = frozenset({errno.EFBIG, errno.ENOSPC, errno.EMFILE, errno.ENFILE, errno.EAGAIN})
_UNQUALIFIED_MODULES = frozenset({"builtins", "__main__", "solution"})

PRISTINE_BUILTINS = dict(builtins.__dict__)
PRELUDE_NAMES: dict = {}
exec(compile(PRELUDE, "<prelude>", "exec"), PRELUDE_NAMES)  # the expensive imports, once per zygote
del PRELUDE_NAMES["__builtins__"]
PROTECTED = frozenset(PRISTINE_BUILTINS) | frozenset(PRELUDE_NAMES)

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

    __slots__ = ("source", "input", "expected", "expected_src")

    def __init__(
        self, source: str, input_src: str | None, expected: str | None, expected_src: str = ""
    ) -> None:
        self.source = source
        self.input = input_src
        self.expected = expected
        self.expected_src = expected_src  # what EXPECTED shows when OUTPUT is not data


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
            site = AssertSite(
                f"assert {self.show(test)}",
                self.show(test.left),
                None,
                self.show(test.comparators[0]),
            )
            args = [ast.Constant(k), test.left, test.comparators[0]]
        else:
            capture = _Capture(k, self.callees)
            shown = self.show(test)
            new_test = capture.visit(copy.deepcopy(test))
            if capture.found is None:
                site = AssertSite(f"assert {shown}", shown, "True", "True")
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
                site = AssertSite(f"assert {shown}", call_src, expected, expected)
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

"""Guards that reject a refinement before or after execution, each with a named reason.

A refinement is only worth training on if it solves the task the way a program should. Passing
the seen tests is necessary but not sufficient: a reply can pass by leaving before the tests run
(early exit), by tampering with the test harness, or by branching on the very inputs the tests
use and returning their expected values. And a reply equal to the student's own attempt teaches
nothing. The static checks here read the code's AST and need no execution; the executor reports
dynamic early exits (``ExecutionOutcome.EARLY_EXIT``) and suspected forgery of the verdict
(``Execution.forgery``), which :func:`after_execution` maps.

These are heuristics with a bias against false rejections: a legitimate base case
(``if n == 0: return 1``) is not hard-coding, so trivial literals and literals the student's
attempt or the reference already use never count.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from services.teacher.program import normalised
from services.teacher.testcases import Case
from shared import pyast
from shared.enums import ExecutionOutcome, Forgery, RejectionReason


@dataclass(frozen=True)
class Rejection:
    reason: RejectionReason
    detail: str


EXIT_CALLS = {
    "exit",
    "quit",
    "sys.exit",
    "os._exit",
    "os.abort",
    "os.kill",
    "os.killpg",
    "signal.raise_signal",
    "signal.pthread_kill",
}
EXIT_EXCEPTIONS = {"SystemExit", "KeyboardInterrupt", "GeneratorExit"}

# Reaching into the caller's frames, the interpreter's module table or the builtins lets a
# program rewrite the assertions that judge it.
HARNESS_ATTRIBUTES = {
    "sys._getframe",
    "sys.settrace",
    "sys.setprofile",
    "sys.modules",
    "sys.exc_info",
    "sys.excepthook",
    "sys.stdout",
    "sys.stderr",
    "inspect.currentframe",
    "inspect.stack",
    "inspect.getouterframes",
    "inspect.getframeinfo",
    "gc.get_objects",
    "gc.get_referrers",
    "atexit.register",
    "builtins",
    "__builtins__",
    "unittest.mock",
    "faulthandler",
}
FRAME_ATTRIBUTES = {"f_back", "f_globals", "f_locals", "f_builtins", "tb_frame", "gi_frame"}
HARNESS_IMPORTS = {"builtins", "atexit", "unittest.mock", "ctypes", "gc"}
# Names the test code relies on: redefining them at module level changes what the tests do.
HARNESS_NAMES = {
    "check",
    "candidate",
    "METADATA",
    "AssertionError",
    "Exception",
    "BaseException",
    "abs",
    "all",
    "any",
    "isinstance",
    "len",
    "round",
    "set",
    "sorted",
    "float",
    "int",
    "str",
    "list",
    "tuple",
    "dict",
    "print",
    "__builtins__",
}


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _where(node: ast.AST) -> str:
    return f"line {getattr(node, 'lineno', '?')}"


def early_exit(tree: ast.Module) -> Rejection | None:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name in EXIT_CALLS:
                return Rejection(
                    RejectionReason.EARLY_EXIT,
                    f"calls {name}() ({_where(node)}): the program would stop before the tests"
                    " finish",
                )
        if isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if _dotted(exc) in EXIT_EXCEPTIONS:
                return Rejection(
                    RejectionReason.EARLY_EXIT,
                    f"raises {_dotted(exc)} ({_where(node)}): the program would stop before the"
                    " tests finish",
                )
    return None


def _always_equal(cls: ast.ClassDef) -> str | None:
    for item in cls.body:
        if isinstance(item, ast.FunctionDef) and item.name in {"__eq__", "__ne__"}:
            returns = [n for n in ast.walk(item) if isinstance(n, ast.Return)]
            wanted = item.name == "__eq__"
            if returns and all(
                isinstance(r.value, ast.Constant) and r.value.value is wanted for r in returns
            ):
                return item.name
    return None


def touches_harness(tree: ast.Module) -> Rejection | None:
    def reject(what: str, node: ast.AST) -> Rejection:
        return Rejection(
            RejectionReason.TOUCHES_HARNESS,
            f"{what} ({_where(node)}): tampers with the test harness",
        )

    for node in tree.body:
        targets: list[ast.AST] = []
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if node.name in HARNESS_NAMES:
                return reject(f"redefines {node.name}", node)
        elif isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign | ast.AugAssign):
            targets = [node.target]
        for target in targets:
            for name in ast.walk(target):
                if isinstance(name, ast.Name) and name.id in HARNESS_NAMES:
                    return reject(f"assigns {name.id}", node)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
            )
            for module in modules:
                if module in HARNESS_IMPORTS or module.startswith("unittest.mock"):
                    return reject(f"imports {module}", node)
        elif isinstance(node, ast.Attribute | ast.Name):
            name = _dotted(node)
            if name in HARNESS_ATTRIBUTES:
                return reject(f"uses {name}", node)
            if isinstance(node, ast.Attribute) and node.attr in FRAME_ATTRIBUTES:
                return reject(f"reads frame attribute {node.attr}", node)
        elif isinstance(node, ast.ClassDef) and (method := _always_equal(node)):
            return reject(f"class {node.name} makes {method} constant", node)
    return None


def is_trivial(value: Any) -> bool:
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, int | float):
        return abs(value) <= 2
    if isinstance(value, str | bytes):
        return len(value) <= 1
    if isinstance(value, tuple | list | set | frozenset):
        return len(value) == 0 or (len(value) == 1 and is_trivial(next(iter(value))))
    if isinstance(value, dict):
        return len(value) == 0
    return False


def _seq(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_seq(v) for v in value)
    return value


def _key(value: Any) -> tuple[str, str]:
    # repr keeps 1, 1.0 and True apart, which == does not; a list and a tuple of the same items
    # are the same input to hard-code (``{(1, 2): 3}.get(tuple(xs))``).
    value = _seq(value)
    return type(value).__name__, repr(value)


def _literals(tree: ast.AST) -> set[tuple[str, str]]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant | ast.UnaryOp | ast.Tuple | ast.List | ast.Set | ast.Dict):
            try:
                found.add(_key(ast.literal_eval(node)))
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                continue
    return found


def _inputs_of(case: Case) -> list[tuple[str, str]]:
    return [_key(case.args[0] if len(case.args) == 1 else case.args)]


def _entry_fn(tree: ast.Module, entry_point: str):
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == entry_point:
            return node
    return None


def hardcodes_expected(
    tree: ast.Module, entry_point: str, cases: Iterable[Case], known: set[tuple[str, str]]
) -> Rejection | None:
    """``known``: literals of code we trust (the student's attempt, the reference)."""
    compared: set[tuple[str, str]] = set()
    returned: set[tuple[str, str]] = set()
    lookups: set[tuple[tuple[str, str], tuple[str, str]]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and all(
            isinstance(op, ast.Eq | ast.In | ast.Is) for op in node.ops
        ):
            for side in [node.left, *node.comparators]:
                compared |= _literals(side)
                if isinstance(side, ast.Tuple | ast.List | ast.Set):
                    for element in side.elts:
                        compared |= _literals(element)
        elif isinstance(node, ast.Return) and node.value is not None:
            returned |= _literals(node.value)
        elif isinstance(node, ast.Dict):
            for k, v in zip(node.keys, node.values, strict=True):
                if k is None:
                    continue
                for lk in _literals(k):
                    for lv in _literals(v):
                        lookups.add((lk, lv))
                    returned |= _literals(v)
    cases = list(cases)
    for case in cases:
        expected = _key(case.expected)
        for given in _inputs_of(case):
            if given in known or is_trivial(case.args[0] if len(case.args) == 1 else case.args):
                continue
            if (given, expected) in lookups or (given in compared and expected in returned):
                return Rejection(
                    RejectionReason.HARDCODES_EXPECTED,
                    f"branches on the seen test input {case.text} and returns its expected value"
                    f" {case.expected!r}",
                )
    fn = _entry_fn(tree, entry_point)
    if fn is not None:
        params = {a.arg for a in fn.args.args + fn.args.posonlyargs + fn.args.kwonlyargs}
        reads = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name)}
        if params and not params & reads:
            for case in cases:
                if not is_trivial(case.expected) and _key(case.expected) in returned:
                    return Rejection(
                        RejectionReason.HARDCODES_EXPECTED,
                        f"ignores its arguments and returns the expected value"
                        f" {case.expected!r} of the seen test {case.text}",
                    )
    return None


def static_check(
    code: str,
    *,
    entry_point: str,
    compare_to: dict[str, str],
    cases: Iterable[Case],
    trusted: Iterable[str] = (),
) -> Rejection | None:
    """All checks that need no execution. ``compare_to``: label -> code the refinement must
    differ from (the student's attempt, and the code shown in a later round's prompt)."""
    mine = normalised(code)
    for label, other in compare_to.items():
        if normalised(other) == mine:
            return Rejection(
                RejectionReason.SAME_AS_ATTEMPT, f"the refined code is the same program as {label}"
            )
    try:
        tree = pyast.parse(code)
    except (SyntaxError, ValueError):
        return None  # the executor reports the syntax error as a test failure, with feedback
    known: set[tuple[str, str]] = set()
    for source in trusted:
        try:
            known |= _literals(pyast.parse(source))
        except (SyntaxError, ValueError):
            continue
    return (
        early_exit(tree)
        or touches_harness(tree)
        or hardcodes_expected(tree, entry_point, cases, known)
    )


FORGERIES = {
    Forgery.NON_DATA: "answered a test with an object that is not plain data",
    Forgery.TAMPERING: "tampered with its channel to the judge",
}


def after_execution(
    outcome: ExecutionOutcome, feedback: str, forgery: Forgery | None = None
) -> Rejection | None:
    """The verdict of the seen-test run; None when it passed. A run the judge flagged as forging
    is rejected as such whatever its outcome: a program that tries to forge its verdict must
    never be taught, even where the forgery failed."""
    if forgery is not None:
        return Rejection(
            RejectionReason.FORGED_VERDICT,
            f"the program {FORGERIES[forgery]}: {feedback}".rstrip(": "),
        )
    if outcome is ExecutionOutcome.PASSED:
        return None
    if outcome is ExecutionOutcome.EARLY_EXIT:
        return Rejection(
            RejectionReason.EARLY_EXIT,
            f"the program exited before the tests finished: {feedback}".rstrip(": "),
        )
    return Rejection(RejectionReason.FAILED_TESTS, f"{outcome.value}: {feedback}".rstrip(": "))

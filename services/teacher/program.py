"""Turning a teacher's (or a reference's) program into the shape the student produces.

The student is prompted with the task and the function header and writes only the body;
``shared.prompts.extract_code`` keeps the body up to the first unindented line. A teacher's answer
is a whole program: imports at the top, maybe a helper before or after the function, maybe a
demo ``print`` at the end. Training the student on that body alone would teach it to call names it
never imports or defines. So :func:`training_body` moves the program's imports and helpers into
the top of the body, drops top-level demo code, and :func:`canonical_program` (header + that body)
is what the executor validates: the exact text a training example teaches is the text that
passed the tests.
"""

from __future__ import annotations

import ast
import re
import textwrap

from shared import pyast

DEFAULT_INDENT = "    "


def _parse(code: str) -> ast.Module | None:
    try:
        return pyast.parse(code)
    except (SyntaxError, ValueError):
        return None


def _entry(tree: ast.Module, entry_point: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == entry_point:
            return node
    return None


def defines(code: str, entry_point: str) -> bool:
    tree = _parse(code)
    if tree is None:
        return bool(re.search(rf"^(async\s+)?def\s+{re.escape(entry_point)}\s*\(", code, re.M))
    return _entry(tree, entry_point) is not None


def complete_program(code: str, header: str, entry_point: str) -> str:
    """A reference solution is either a whole program (MBPP) or a body (HumanEval's
    ``canonical_solution``); the prompt and the executor need a whole program."""
    if defines(code, entry_point):
        return code.rstrip() + "\n"
    return header.rstrip("\n") + "\n" + code.rstrip("\n").lstrip("\n") + "\n"


def _is_docstring(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )


def _header_function(header: str, entry_point: str):
    """The header parsed as a function with a placeholder body (None when it does not parse)."""
    head = header.rstrip()
    for body in ("\n    pass\n", "\n        pass\n", " pass\n"):
        tree = _parse(head + body)
        if tree is not None:
            return tree, _entry(tree, entry_point)
    return None, None


def _arg_names(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    a = fn.args
    names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]
    names += [x.arg for x in (a.vararg, a.kwarg) if x is not None]
    return names


def _is_demo(node: ast.stmt) -> bool:
    """Top-level code that only runs the program (prints, asserts, a __main__ block)."""
    if isinstance(node, ast.Expr | ast.Assert):
        return True
    if isinstance(node, ast.If):
        test = ast.unparse(node.test).replace("'", '"')
        return "__name__" in test and "__main__" in test
    return False


def _segment(lines: list[str], node: ast.stmt) -> list[str]:
    start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    return lines[start - 1 : node.end_lineno]


def training_body(program: str, header: str, entry_point: str) -> str | None:
    """The body to append to the header so that header + body behaves like ``program``.

    None when that cannot be expressed: the program does not parse or lacks the entry point, the
    function is decorated, its parameters differ from the header's, or the result does not parse.
    """
    tree = _parse(program)
    if tree is None:
        return None
    fn = _entry(tree, entry_point)
    head_tree, head_fn = _header_function(header, entry_point)
    if fn is None or fn.decorator_list or head_fn is None:
        return None
    if _arg_names(fn) != _arg_names(head_fn):
        return None
    lines = program.splitlines()
    stmts = list(fn.body)
    if head_fn.body and _is_docstring(head_fn.body[0]) and stmts and _is_docstring(stmts[0]):
        stmts = stmts[1:]  # the header already carries the docstring
    if not stmts:
        return None

    first = stmts[0]
    signature_end = first.lineno - 1 if first.lineno > fn.lineno else None
    if signature_end is None:
        # One-line function ("def f(x): return x"): the body starts on the def line.
        indent = DEFAULT_INDENT
        body = [indent + lines[first.lineno - 1][first.col_offset :].strip()]
        body += lines[first.lineno : fn.end_lineno]
    else:
        body = lines[first.lineno - 1 : fn.end_lineno]
        indent = re.match(r"\s*", body[0]).group(0) or DEFAULT_INDENT

    header_stmts = {ast.dump(n) for n in head_tree.body if n is not head_fn}
    imports, helpers = [], []
    for node in tree.body:
        if node is fn or _is_demo(node) or ast.dump(node) in header_stmts:
            continue
        target = imports if isinstance(node, ast.Import | ast.ImportFrom) else helpers
        target.extend(_segment(lines, node))
    prelude = textwrap.indent("\n".join(imports + helpers), indent) if imports or helpers else ""

    text = (prelude + "\n" if prelude else "") + "\n".join(body).rstrip() + "\n"
    if _parse(header.rstrip("\n") + "\n" + text) is None:
        return None
    return text


def canonical_program(program: str, header: str, entry_point: str) -> str:
    """Header + training body when the program can take that shape, else the program."""
    body = training_body(program, header, entry_point)
    if body is None:
        return program.rstrip() + "\n"
    return header.rstrip("\n") + "\n" + body


def normalised(code: str) -> str:
    """Code with comments, docstrings and layout removed, for "is this the same program"."""
    tree = _parse(code)
    if tree is None:
        return " ".join(code.split())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            and body
            and _is_docstring(body[0])
        ):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


_FENCE = re.compile(r"```[ \t]*([\w+-]*)[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)
_PYTHON_TAGS = {"", "python", "py", "python3"}


def teacher_code(reply: str, header: str, entry_point: str) -> str | None:
    """The program in a teacher's reply, or None when it holds no usable code.

    The prompt asks for one code block starting with the header. A block that defines the entry
    point wins; an indented block is taken as the body; a reply without a fence counts only if
    all of it is Python defining the entry point. Prose, an empty block or a block of something
    else is "no code": a rejected refinement, never a guess.
    """
    blocks = [body for tag, body in _FENCE.findall(reply) if tag.lower() in _PYTHON_TAGS]
    for block in blocks:
        if defines(block, entry_point):
            return block.rstrip() + "\n"
    for block in blocks:
        lines = [line for line in block.splitlines() if line.strip()]
        if lines and lines[0][0].isspace():
            return complete_program(block, header, entry_point)
    if not blocks and _parse(reply) is not None and defines(reply, entry_point):
        return reply.strip() + "\n"
    return None

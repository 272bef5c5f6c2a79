"""The student's prompt formats and the paper's code clean-up.

Both the student (at inference) and the teacher (when it builds training examples) use these, so
a training example's input is byte-for-byte the prompt the student later sees:

- :func:`generation_prompt` — PERsD / StanD input: the task text and the function header. The
  student continues with the function body.
- :func:`refine_prompt` — PERsD-refine input: the rectify instruction, the task, the student's own
  code, the execution feedback, then the task and header again. Used for self-repair steps.

Everything is written as Python comments so a code model reads one well-formed Python file.
"""

from __future__ import annotations

import ast
import re

from shared import pyast

RECTIFY_INSTRUCTION = (
    "Rectify the below code for the given task based on the errors obtained in the unit tests."
)

# Completions stop where a new top-level statement starts: the answer is one function, and the
# paper's clean-up would cut the rest anyway. Nested defs are indented, so they do not match.
# (The OpenAI API allows at most 4 stop sequences.) The student and the trainer's gate both use
# them, so the gate scores answers cut the way the student's are.
STOP = ["\ndef ", "\nclass ", "\nif __name__", "\nprint("]

_FENCE = re.compile(r"```[ \t]*(?:python|py|Python)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)


def _comment(text: str) -> str:
    lines = text.strip("\n").splitlines() or [""]
    return "\n".join(f"# {line}".rstrip() for line in lines)


def _header(header: str) -> str:
    return header.rstrip("\n") + "\n"


def generation_prompt(description: str, header: str) -> str:
    """Task text plus header; the completion is the function body."""
    task = f"{_comment(description)}\n" if description.strip() else ""
    return f"{task}{_header(header)}"


def refine_prompt(description: str, header: str, code: str, feedback: str) -> str:
    """The PERsD-refine format: rectify ``code`` for the task given the unit-test ``feedback``."""
    return (
        f"# {RECTIFY_INSTRUCTION}\n"
        f"# Task:\n{_comment(description)}\n"
        f"# Code:\n{code.rstrip()}\n"
        f"# Errors from the unit tests:\n{_comment(feedback)}\n"
        f"# Task:\n{_comment(description)}\n"
        f"{_header(header)}"
    )


def _body_until_dedent(text: str) -> str:
    """The function body: lines up to the first non-blank line that is not indented."""
    kept: list[str] = []
    for line in text.splitlines():
        if line.strip() and not line[0].isspace():
            break
        kept.append(line)
    return "\n".join(kept).rstrip()


def _defines(code: str, entry_point: str) -> bool:
    try:
        tree = pyast.parse(code)
    except SyntaxError:
        return bool(re.search(rf"^\s*(async\s+)?def\s+{re.escape(entry_point)}\s*\(", code, re.M))
    return any(
        isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == entry_point
        for node in ast.walk(tree)
    )


def extract_code(completion: str, header: str, entry_point: str) -> str:
    """The paper's clean-up of a model reply into a complete program.

    A fenced code block wins; if it defines the entry point it is the whole program, otherwise it
    is a body for the header. Without a fence the completion continues the header, and only the
    body up to the first unindented line is kept (models run on past the function).
    """
    fenced = _FENCE.search(completion)
    if fenced:
        block = fenced.group(1).rstrip()
        if _defines(block, entry_point):
            return block + "\n"
        return _header(header) + _body_until_dedent(block) + "\n"
    if _defines(completion, entry_point) and completion.lstrip().startswith(
        ("def ", "async def ", "import ", "from ")
    ):
        return completion.rstrip() + "\n"
    return _header(header) + _body_until_dedent(completion) + "\n"


def body_of(code: str, header: str) -> str:
    """The part of a complete program after the header: a training target for header prompts."""
    head = _header(header)
    if code.startswith(head):
        return code[len(head) :].rstrip() + "\n"
    return code.rstrip() + "\n"

"""The teacher's chat prompts (the PERsD paper's refinement step).

Two turns: (a) the task and header, answered with a correct solution (the task's reference when
it has one, otherwise the teacher's own answer to :func:`solve_messages`); (b) the rectify
request with the incorrect code, the error text and the rules. The student's prompt formats live
in ``shared.prompts``; these are only ever seen by the teacher.
"""

from __future__ import annotations

from typing import Any

Messages = list[dict[str, Any]]

RECTIFY = (
    "Act as a Python expert and rectify this incorrect code based on the error from unit testing."
)
RULES = (
    "Rules:\n"
    "- Fix the logic and write a complete function.\n"
    "- If the code is badly wrong, rewrite it; otherwise stay as close as possible to the"
    " given code.\n"
    "- Answer with one Python code block that starts with the given header:\n"
    "{header}"
)


def fenced(code: str) -> str:
    return f"```python\n{code.rstrip()}\n```"


def task_turn(description: str, header: str) -> str:
    return (
        f"{description.strip()}\n\n"
        "Complete the following Python function. Answer with one Python code block.\n"
        f"{fenced(header)}"
    )


def solve_messages(description: str, header: str) -> Messages:
    """Turn (a) alone: asks the teacher for its own solution when the task has no reference."""
    return [{"role": "user", "content": task_turn(description, header)}]


def rectify_messages(
    description: str, header: str, solution: str, incorrect_code: str, error: str
) -> Messages:
    """The two-turn rectify prompt; ``solution`` is a whole program that answers turn (a)."""
    rectify = (
        f"{RECTIFY}\n\n"
        f"Incorrect code:\n{fenced(incorrect_code)}\n\n"
        f"Error from the unit tests:\n{error.strip() or '(no error text)'}\n\n"
        + RULES.format(header=fenced(header))
    )
    return [
        {"role": "user", "content": task_turn(description, header)},
        {"role": "assistant", "content": fenced(solution)},
        {"role": "user", "content": rectify},
    ]


def solution_in(messages: Messages) -> str | None:
    """The turn-(a) answer of a stored prompt, so later rounds reuse the teacher's own solution
    instead of paying for it again."""
    if len(messages) >= 2 and messages[1].get("role") == "assistant":
        content = str(messages[1]["content"])
        if content.startswith("```python\n") and content.endswith("\n```"):
            return content[len("```python\n") : -len("\n```")] + "\n"
    return None

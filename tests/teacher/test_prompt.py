"""The teacher's two-turn rectify prompt, exactly (the PERsD paper's refinement step)."""

from __future__ import annotations

from services.teacher.prompt import rectify_messages, solution_in, solve_messages


def test_rectify_prompt_has_the_two_turns_and_the_rules() -> None:
    messages = rectify_messages(
        "Add two numbers.",
        "def add(a, b):",
        "def add(a, b):\n    return a + b\n",
        "def add(a, b):\n    return a - b\n",
        "AssertionError: INPUT: add(1, 2) OUTPUT: -1 EXPECTED: 3\n",
    )
    assert messages == [
        {
            "role": "user",
            "content": "Add two numbers.\n\n"
            "Complete the following Python function. Answer with one Python code block.\n"
            "```python\ndef add(a, b):\n```",
        },
        {"role": "assistant", "content": "```python\ndef add(a, b):\n    return a + b\n```"},
        {
            "role": "user",
            "content": "Act as a Python expert and rectify this incorrect code based on the error"
            " from unit testing.\n\n"
            "Incorrect code:\n```python\ndef add(a, b):\n    return a - b\n```\n\n"
            "Error from the unit tests:\n"
            "AssertionError: INPUT: add(1, 2) OUTPUT: -1 EXPECTED: 3\n\n"
            "Rules:\n"
            "- Fix the logic and write a complete function.\n"
            "- If the code is badly wrong, rewrite it; otherwise stay as close as possible to the"
            " given code.\n"
            "- Answer with one Python code block that starts with the given header:\n"
            "```python\ndef add(a, b):\n```",
        },
    ]
    # A later round reuses the teacher's own turn-(a) answer instead of paying for it again.
    assert solution_in(messages) == "def add(a, b):\n    return a + b\n"
    assert solution_in(solve_messages("Add two numbers.", "def add(a, b):")) is None

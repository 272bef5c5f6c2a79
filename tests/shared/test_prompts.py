from __future__ import annotations

from shared.prompts import body_of, extract_code, generation_prompt, refine_prompt

HEADER = "def add(a, b):"


def test_generation_prompt_is_commented_task_then_header() -> None:
    assert generation_prompt("Add two numbers.\nReturn the sum.", HEADER) == (
        "# Add two numbers.\n# Return the sum.\ndef add(a, b):\n"
    )
    assert generation_prompt("", HEADER) == "def add(a, b):\n"


def test_refine_prompt_layout() -> None:
    got = refine_prompt(
        "Add two numbers.",
        HEADER,
        "def add(a, b):\n    return a - b\n",
        "AssertionError: INPUT: add(1, 2) OUTPUT: -1 EXPECTED: 3",
    )
    assert got == (
        "# Rectify the below code for the given task based on the errors obtained in the unit"
        " tests.\n"
        "# Task:\n# Add two numbers.\n"
        "# Code:\ndef add(a, b):\n    return a - b\n"
        "# Errors from the unit tests:\n# AssertionError: INPUT: add(1, 2) OUTPUT: -1 EXPECTED: 3\n"
        "# Task:\n# Add two numbers.\n"
        "def add(a, b):\n"
    )


def test_continuation_is_cut_at_first_unindented_line() -> None:
    completion = "    return a + b\n\n\nprint(add(1, 2))\ndef other():\n    pass\n"
    assert extract_code(completion, HEADER, "add") == "def add(a, b):\n    return a + b\n"


def test_fenced_block_with_full_function_wins() -> None:
    completion = (
        "Here you go:\n```python\nimport math\n\ndef add(a, b):\n    return a + b\n```\nDone."
    )
    assert (
        extract_code(completion, HEADER, "add")
        == "import math\n\ndef add(a, b):\n    return a + b\n"
    )


def test_fenced_body_only_gets_the_header() -> None:
    assert extract_code("```\n    return a + b\n```", HEADER, "add") == (
        "def add(a, b):\n    return a + b\n"
    )


def test_unterminated_fence_and_full_function_continuation() -> None:
    assert extract_code("```python\ndef add(a, b):\n    return b + a", HEADER, "add") == (
        "def add(a, b):\n    return b + a\n"
    )
    assert extract_code("def add(a, b):\n    return 3\n", HEADER, "add") == (
        "def add(a, b):\n    return 3\n"
    )


def test_body_of_strips_the_header() -> None:
    assert body_of("def add(a, b):\n    return a + b\n", HEADER) == "    return a + b\n"

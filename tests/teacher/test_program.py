"""Teacher code → the shape the student writes (header + body), and reply extraction."""

from __future__ import annotations

from services.teacher.program import (
    canonical_program,
    complete_program,
    normalised,
    teacher_code,
    training_body,
)

HEADER = "def add(a, b):"


def test_imports_and_helpers_move_into_the_body_and_demo_code_is_dropped() -> None:
    program = (
        "import math\n\n"
        "def helper(x):\n    return math.floor(x)\n\n"
        "def add(a, b):\n    return helper(a) + b\n\n"
        "print(add(1, 2))\n"
        'if __name__ == "__main__":\n    add(3, 4)\n'
    )
    assert training_body(program, HEADER, "add") == (
        "    import math\n"
        "    def helper(x):\n        return math.floor(x)\n"
        "    return helper(a) + b\n"
    )
    assert canonical_program(program, HEADER, "add") == (
        "def add(a, b):\n"
        "    import math\n"
        "    def helper(x):\n        return math.floor(x)\n"
        "    return helper(a) + b\n"
    )


def test_one_line_function_and_header_docstring_not_repeated() -> None:
    assert training_body("def add(a, b): return a + b", HEADER, "add") == "    return a + b\n"
    header = 'from typing import List\n\n\ndef total(xs: List[int]) -> int:\n    """Sum."""\n'
    program = (
        "from typing import List\nimport operator\n\n"
        'def total(xs: List[int]) -> int:\n    """Sum."""\n    return sum(xs)\n'
    )
    assert training_body(program, header, "total") == "    import operator\n    return sum(xs)\n"


def test_bodies_that_cannot_follow_the_header_are_refused() -> None:
    assert training_body("def add(x, y):\n    return x + y\n", HEADER, "add") is None  # renamed
    assert training_body("@cache\ndef add(a, b):\n    return a\n", HEADER, "add") is None
    assert training_body("def add(a, b) return", HEADER, "add") is None
    assert training_body("def other(a, b):\n    return a\n", HEADER, "add") is None
    assert canonical_program("def add(x, y):\n    return x + y", HEADER, "add") == (
        "def add(x, y):\n    return x + y\n"
    )


def test_reference_body_or_program() -> None:
    assert (
        complete_program("    return a + b\n", HEADER, "add")
        == "def add(a, b):\n    return a + b\n"
    )
    assert complete_program("def add(a, b):\n    return b + a", HEADER, "add") == (
        "def add(a, b):\n    return b + a\n"
    )


def test_teacher_code_extraction() -> None:
    fenced = "Fixed:\n```python\ndef add(a, b):\n    return a + b\n```\nIt adds."
    assert teacher_code(fenced, HEADER, "add") == "def add(a, b):\n    return a + b\n"
    assert teacher_code("```py\n    return a + b\n```", HEADER, "add") == (
        "def add(a, b):\n    return a + b\n"
    )
    assert teacher_code("def add(a, b):\n    return a + b\n", HEADER, "add") == (
        "def add(a, b):\n    return a + b\n"
    )
    # Malformed replies are "no code", never a guess.
    assert teacher_code("You should add a and b.", HEADER, "add") is None
    assert teacher_code("```python\n```", HEADER, "add") is None
    assert teacher_code("```bash\npip install add\n```", HEADER, "add") is None
    assert teacher_code("```python\nx = 1\n```", HEADER, "add") is None


def test_normalised_ignores_comments_docstrings_and_layout() -> None:
    a = "def add(a,b):\n  '''Adds.'''\n  return a+b  # sum\n"
    assert normalised(a) == normalised("def add(a, b):\n    return a + b\n")
    assert normalised(a) != normalised("def add(a, b):\n    return b + a\n")

"""Outcomes, per-test results and the PERsD feedback text, for each test format."""

from __future__ import annotations

from shared.enums import ExecutionOutcome as O
from tests.executor.conftest import asserts, run, statuses

ADD = "def f(a, b):\n    return a + b\n"


def test_all_tests_pass(pool) -> None:
    result = run(pool, ADD, asserts("assert f(1, 2) == 3", "assert f('a', 'b') == 'ab'"))
    assert result.outcome is O.PASSED
    assert result.feedback == "" and result.error_type is None
    assert statuses(result) == ["passed", "passed"]
    assert [t.test for t in result.test_results] == [
        "assert f(1, 2) == 3",
        "assert f('a', 'b') == 'ab'",
    ]
    assert result.duration_ms > 0


def test_failed_assertion_reports_input_output_expected(pool) -> None:
    result = run(
        pool, ADD, asserts("assert f(1, 2) == 3", "assert f(2, 2) == 5", "assert f(1, 1) == 3")
    )
    assert result.outcome is O.FAILED
    assert result.error_type == "AssertionError"
    # The first failure is the feedback; every test still ran and is recorded.
    assert result.feedback == "AssertionError\nINPUT: f(2, 2)\nOUTPUT: 4\nEXPECTED: 5"
    assert statuses(result) == ["passed", "failed", "failed"]
    assert (
        result.test_results[2].feedback == "AssertionError\nINPUT: f(1, 1)\nOUTPUT: 2\nEXPECTED: 3"
    )


def test_call_is_evaluated_once_and_separately_from_expected(pool) -> None:
    code = "calls = []\ndef f(x):\n    calls.append(x)\n    return len(calls)\n"
    result = run(pool, code, asserts("assert f(7) == f(7) + 10"))
    # left side evaluated first (1), right side second (2 + 10): the order Python uses.
    assert result.feedback == "AssertionError\nINPUT: f(7)\nOUTPUT: 1\nEXPECTED: 12"


def test_assertions_that_are_not_comparisons(pool) -> None:
    code = "def f(x):\n    return x % 2 == 0\n"
    result = run(
        pool,
        code,
        asserts(
            "assert f(3)", "assert not f(2)", "assert abs(f(3) - 2.5) < 1e-6", "assert 3 in [1, 2]"
        ),
    )
    assert statuses(result) == ["failed"] * 4
    feedback = [t.feedback for t in result.test_results]
    assert feedback == [
        "AssertionError\nINPUT: f(3)\nOUTPUT: False\nEXPECTED: True",
        "AssertionError\nINPUT: f(2)\nOUTPUT: True\nEXPECTED: False",
        "AssertionError\nINPUT: f(3)\nOUTPUT: False\nEXPECTED: abs(f(3) - 2.5) < 1e-06 to be true",
        "AssertionError\nINPUT: 3 in [1, 2]\nOUTPUT: False\nEXPECTED: True",
    ]


def test_is_comparison(pool) -> None:
    result = run(pool, "def f():\n    return 0\n", asserts("assert f() is None"))
    assert result.feedback == "AssertionError\nINPUT: f()\nOUTPUT: 0\nEXPECTED: None"


def test_feedback_is_truncated_to_50_words_and_300_characters(pool) -> None:
    code = "def f(n):\n    return list(range(n)) if n else 'x' * 1000\n"
    result = run(pool, code, asserts("assert f(100) == []", "assert f(0) == 'y'"))
    first_50_words = " ".join(f"{i}," for i in range(50))  # "[0, 1, ..., 49," of the repr
    assert result.test_results[0].feedback == (
        f"AssertionError\nINPUT: f(100)\nOUTPUT: [{first_50_words} ...\nEXPECTED: []"
    )
    assert result.test_results[1].feedback == (
        "AssertionError\nINPUT: f(0)\nOUTPUT: '" + "x" * 299 + " ...\nEXPECTED: 'y'"
    )


def test_exception_reports_the_last_traceback_line(pool) -> None:
    code = "def f(x):\n    return helper(x)\n"
    result = run(pool, code, asserts("assert f(1) == 1", "assert f(2) == 2"))
    assert result.outcome is O.ERROR
    assert result.error_type == "NameError"
    assert result.feedback == "NameError: name 'helper' is not defined"
    assert statuses(result) == ["error", "error"]


def test_exception_from_a_library_is_qualified_like_a_traceback(pool) -> None:
    code = "def f():\n    return np.linalg.inv(np.zeros((2, 2)))\n"
    result = run(pool, code, asserts("assert f() == 1"))
    assert result.outcome is O.ERROR
    assert result.error_type == "LinAlgError"
    assert result.feedback == "numpy.linalg.LinAlgError: Singular matrix"


def test_assertion_inside_the_program_is_a_failure_without_input(pool) -> None:
    code = "def f(x):\n    assert x > 0, 'x must be positive'\n    return x\n"
    result = run(pool, code, asserts("assert f(-1) == -1"))
    assert result.outcome is O.FAILED
    assert result.feedback == "AssertionError: x must be positive"


def test_syntax_error_reports_line_and_message(pool) -> None:
    result = run(pool, "def f(a, b)\n    return a + b\n", asserts("assert f(1, 2) == 3"))
    assert result.outcome is O.SYNTAX_ERROR
    assert result.error_type == "SyntaxError"
    assert result.feedback == "SyntaxError: expected ':' (line 1)\n    def f(a, b)"
    assert statuses(result) == ["not_run"]


def test_indentation_error(pool) -> None:
    result = run(pool, "def f(a, b):\nreturn a + b\n", asserts("assert f(1, 2) == 3"))
    assert result.outcome is O.SYNTAX_ERROR
    assert result.error_type == "IndentationError"
    assert result.feedback == (
        "IndentationError: expected an indented block after function definition on line 1"
        " (line 2)\n    return a + b"
    )


def test_error_while_loading_the_program(pool) -> None:
    result = run(pool, "x = 1 / 0\ndef f():\n    return 1\n", asserts("assert f() == 1"))
    assert result.outcome is O.ERROR
    assert result.feedback == "ZeroDivisionError: division by zero"
    assert statuses(result) == ["not_run"]


def test_timeout_names_the_test_and_stops_the_rest(pool) -> None:
    code = "def f(x):\n    while x:\n        pass\n    return x\n"
    result = run(
        pool,
        code,
        asserts("assert f(0) == 0", "assert f(1) == 1", "assert f(0) == 0"),
        timeout_s=0.5,
    )
    assert result.outcome is O.TIMEOUT
    assert result.error_type == "TimeoutError"
    assert result.feedback == "TimeoutError: assert f(1) == 1 did not finish within 0.5 s"
    assert statuses(result) == ["passed", "timeout", "not_run"]


def test_earlier_failure_stays_the_feedback_after_a_later_timeout(pool) -> None:
    code = "def f(x):\n    while x == 2:\n        pass\n    return x\n"
    result = run(pool, code, asserts("assert f(1) == 0", "assert f(2) == 2"), timeout_s=0.5)
    assert result.outcome is O.FAILED
    assert result.feedback == "AssertionError\nINPUT: f(1)\nOUTPUT: 1\nEXPECTED: 0"
    assert statuses(result) == ["failed", "timeout"]


CHECK = """
METADATA = {"author": "test"}


def check(candidate):
    assert candidate(1, 2) == 3
    for i in range(20):
        assert candidate(i, i) == 2 * i
    assert candidate(2, 2) == 4, "message is not part of the feedback"
    assert True
"""


def test_check_format_passes_and_records_each_assertion(pool) -> None:
    result = run(pool, ADD, {"format": "check", "check": CHECK}, entry_point="f")
    assert result.outcome is O.PASSED
    assert [t.test for t in result.test_results] == [
        "assert f(1, 2) == 3",
        "assert f(i, i) == 2 * i",
        "assert f(2, 2) == 4",
        "assert True",
        "check(f)",
    ]
    assert statuses(result) == ["passed"] * 5


def test_check_format_failure_names_the_entry_point(pool) -> None:
    code = "def f(a, b):\n    return a + b if a < 5 else 0\n"
    result = run(pool, code, {"format": "check", "check": CHECK}, entry_point="f")
    assert result.outcome is O.FAILED
    assert result.feedback == "AssertionError\nINPUT: f(i, i)\nOUTPUT: 0\nEXPECTED: 10"
    assert statuses(result) == ["passed", "failed", "not_run", "not_run", "failed"]


def test_check_format_error_between_assertions_is_pinned_on_check(pool) -> None:
    check = "def check(candidate):\n    assert candidate(0) == 0\n    x = candidate(1)\n    assert x == 1\n"
    code = "def f(n):\n    return 1 // n - 1 // n\n"
    result = run(pool, code, {"format": "check", "check": check}, entry_point="f")
    assert result.outcome is O.ERROR
    assert result.feedback == "ZeroDivisionError: integer division or modulo by zero"
    assert statuses(result) == ["error", "not_run", "error"]


def test_check_format_timeout_names_the_running_assertion(pool) -> None:
    check = "def check(candidate):\n    assert candidate(0) == 0\n    assert candidate(1) == 1\n"
    code = "def f(x):\n    while x:\n        pass\n    return x\n"
    result = run(pool, code, {"format": "check", "check": check}, entry_point="f", timeout_s=0.5)
    assert result.outcome is O.TIMEOUT
    assert result.feedback == "TimeoutError: assert f(1) == 1 did not finish within 0.5 s"
    assert statuses(result) == ["passed", "timeout", "timeout"]


def test_check_format_missing_entry_point(pool) -> None:
    result = run(pool, "def g():\n    pass\n", {"format": "check", "check": CHECK}, entry_point="f")
    assert result.outcome is O.ERROR
    assert result.feedback == "NameError: name 'f' is not defined"


def test_io_format(pool) -> None:
    tests = {
        "format": "io",
        "cases": [
            {"call": "f(1, 2)", "expected": "3"},
            {"call": "f([1], [2])", "expected": "[1, 2]"},
            {"call": "f(2, 2)", "expected": "5"},
        ],
    }
    result = run(pool, ADD, tests)
    assert result.outcome is O.FAILED
    assert [t.test for t in result.test_results] == [
        "f(1, 2) == 3",
        "f([1], [2]) == [1, 2]",
        "f(2, 2) == 5",
    ]
    assert statuses(result) == ["passed", "passed", "failed"]
    assert result.feedback == "AssertionError\nINPUT: f(2, 2)\nOUTPUT: 4\nEXPECTED: 5"


def test_feedback_is_deterministic_across_slots_and_runs(pool) -> None:
    code = "def f():\n    return {'pear', 'apple', 'fig', 'plum', 'kiwi'}\n"
    tests = asserts("assert f() == set()")
    results = [pool.submit(_job(code, tests)) for _ in range(4)]
    feedback = {r.result().feedback for r in results}
    assert len(feedback) == 1
    (text,) = feedback
    assert text.startswith("AssertionError\nINPUT: f()\nOUTPUT: {")


def _job(code, tests):
    from services.executor.pool import make_job

    return make_job(code, tests, "f")


def test_paper_import_block_is_available(pool) -> None:
    code = (
        "def f(xs: List[int]) -> int:\n"
        "    c = Counter(xs)\n"
        "    return int(np.sum(list(c.values())) + math.floor(heapq.nlargest(1, xs)[0]))\n"
    )
    assert run(pool, code, asserts("assert f([3, 1, 3]) == 6")).outcome is O.PASSED


def test_ordinary_concurrency_still_works(pool) -> None:
    code = """
import asyncio, multiprocessing, subprocess, threading

def square(x):
    return x * x

def f():
    with multiprocessing.Pool(2) as p:
        squares = p.map(square, [1, 2, 3])
    async def add():
        await asyncio.sleep(0)
        return 1
    one = asyncio.run(add())
    box = []
    t = threading.Thread(target=lambda: box.append(2))
    t.start(); t.join()
    echo = subprocess.run(["/usr/bin/python3", "-c", "print(3)"], capture_output=True, text=True).stdout
    with open("/tmp/x", "w") as fh:
        fh.write("4")
    return squares, one, box, echo, open("/tmp/x").read()
"""
    result = run(pool, code, asserts("assert f() == ([1, 4, 9], 1, [2], '3\\n', '4')"))
    assert result.outcome is O.PASSED, result.feedback


def test_program_output_is_kept_but_not_judged(pool) -> None:
    code = "print('hello')\ndef f():\n    print('world')\n    return 1\n"
    result = run(pool, code, asserts("assert f() == 1"))
    assert result.outcome is O.PASSED
    assert result.output == "hello\nworld\n"


def test_main_block_of_the_program_does_not_run(pool) -> None:
    code = "def f():\n    return 1\nif __name__ == '__main__':\n    raise SystemExit(input())\n"
    assert run(pool, code, asserts("assert f() == 1")).outcome is O.PASSED


def test_many_tests_are_all_recorded(pool) -> None:
    # Enough records (failures with feedback) to overflow a default 64 KiB pipe several times.
    tests = asserts(*[f"assert f({i}, 1) == {i}" for i in range(2000)])
    result = run(pool, ADD, tests)
    assert result.outcome is O.FAILED
    assert len(result.test_results) == 2000
    assert set(statuses(result)) == {"failed"}
    assert result.test_results[1999].feedback == (
        "AssertionError\nINPUT: f(1999, 1)\nOUTPUT: 2000\nEXPECTED: 1999"
    )

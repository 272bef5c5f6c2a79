"""``persd eval``: pass@k of the student per inference step, as the paper reports it.

For each task and sample, step 1 answers from the generation prompt. At each later step an
answer that failed the *seen* tests is repaired with the PERsD-refine prompt (its own code and
the seen-test feedback); an answer that passed them, or a task that shows no seen tests, is
carried forward unchanged. Every step's answer is scored on the *hidden* tests, which never reach
a prompt. Runs go through the executor's in-process API (the sandbox), and many chains run at
once so vLLM batches their requests.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.student.attempts import sampling_params, storable
from services.student.datasets import EvalTask, load_dataset
from services.student.passk import ks_for, pass_at_k
from services.student.routing import Router, Target, active_target
from shared.errors import InvalidInput
from shared.prompts import extract_code, generation_prompt, refine_prompt
from shared.student_settings import StudentSettings, get_student_settings
from shared.vllm_client import VllmClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    passed: bool
    outcome: str
    feedback: str


# (code, test suite document, entry point) -> verdict
RunTests = Callable[[str, dict[str, Any], str], Verdict]


@dataclass(frozen=True)
class StepRecord:
    step: int
    generated: bool  # False: carried forward from the previous step
    seen_passed: bool | None  # None: the task shows no seen tests
    hidden_passed: bool
    hidden_outcome: str
    code: str


def run_chain(
    task: EvalTask,
    steps: int,
    router: Router,
    target: Target,
    sampling: dict[str, Any],
    run_tests: RunTests,
) -> list[StepRecord]:
    records: list[StepRecord] = []
    code, feedback = "", ""
    for step in range(1, steps + 1):
        previous = records[-1] if records else None
        if previous is not None and previous.seen_passed is not False:
            records.append(
                StepRecord(
                    step,
                    False,
                    previous.seen_passed,
                    previous.hidden_passed,
                    previous.hidden_outcome,
                    previous.code,
                )  # fmt: skip
            )
            continue
        prompt = (
            generation_prompt(task.description, task.header)
            if previous is None
            else refine_prompt(task.description, task.header, code, feedback)
        )
        _, completion = router.generate(prompt, sampling, target=target)
        code = extract_code(storable(completion.text), task.header, task.entry_point)
        seen_passed: bool | None = None
        if task.seen_tests is not None:
            seen = run_tests(code, task.seen_tests, task.entry_point)
            seen_passed, feedback = seen.passed, seen.feedback
        hidden = run_tests(code, task.hidden_tests, task.entry_point)
        records.append(StepRecord(step, True, seen_passed, hidden.passed, hidden.outcome, code))
    return records


def evaluate(
    tasks: list[EvalTask],
    *,
    steps: int,
    samples: int,
    router: Router,
    target: Target,
    sampling: dict[str, Any],
    run_tests: RunTests,
    concurrency: int,
    progress: bool = True,
) -> dict[str, Any]:
    if steps < 1 or samples < 1:
        raise InvalidInput(f"steps and samples must be at least 1 (got {steps} and {samples})")
    from tqdm import tqdm

    started = time.perf_counter()
    chains: dict[tuple[int, int], list[StepRecord]] = {}
    jobs = [(t, s) for t in range(len(tasks)) for s in range(samples)]
    with (
        ThreadPoolExecutor(concurrency) as pool,
        tqdm(total=len(jobs), desc="eval", unit="chain", disable=not progress) as bar,
    ):
        futures = {
            pool.submit(run_chain, tasks[t], steps, router, target, sampling, run_tests): (t, s)
            for t, s in jobs
        }
        for future in as_completed(futures):
            chains[futures[future]] = future.result()
            bar.update(1)

    ks = ks_for(samples)
    per_task = []
    for t, task in enumerate(tasks):
        correct = [
            sum(chains[(t, s)][step].hidden_passed for s in range(samples)) for step in range(steps)
        ]
        per_task.append(
            {
                "task_id": task.task_id,
                "has_seen_tests": task.seen_tests is not None,
                "correct_per_step": correct,
                "samples": [[asdict(r) for r in chains[(t, s)]] for s in range(samples)],
            }
        )
    per_step = []
    for step in range(steps):
        scores = {
            f"pass@{k}": sum(pass_at_k(samples, p["correct_per_step"][step], k) for p in per_task)
            / len(tasks)
            for k in ks
        }
        generated = sum(chains[(t, s)][step].generated for t, s in jobs)
        per_step.append({"step": step + 1, **scores, "generated": generated})
    return {
        "tasks": len(tasks),
        "tasks_with_seen_tests": sum(t.seen_tests is not None for t in tasks),
        "samples": samples,
        "steps": steps,
        "model": target.model,
        "adapter_id": target.adapter_id,
        "sampling": sampling,
        "k": ks,
        "per_step": per_step,
        "duration_s": round(time.perf_counter() - started, 3),
        "per_task": per_task,
    }


def executor_runner(workers: int | None = None):
    """Tests run in the executor's sandbox, in process (no broker). Returns (run_tests, close)."""
    from services.executor.api import ExecutorPool

    pool = ExecutorPool(workers=workers)

    def run_tests(code: str, tests: dict[str, Any], entry_point: str) -> Verdict:
        result = pool.run(code, tests, entry_point)
        return Verdict(result.passed, result.outcome.value, result.feedback)

    return run_tests, pool.close


def resolve_target(router: Router, adapter: str | None, base: bool) -> tuple[Target, bool]:
    """The model to evaluate, and whether this call loaded it (to unload afterwards)."""
    from shared.db import session_scope
    from shared.registry import get_adapter
    from shared.vllm_client import ensure_loaded

    if base:
        return Target(model=router.base_model), False
    if adapter is None:
        target = active_target(router.base_model)
    else:
        with session_scope() as session:
            row = get_adapter(session, adapter)
            target = Target(row.name, row.id, row.artifact_path)
    if target.adapter_path is None:
        return target, False
    loaded_before = all(target.model in router.client.served_models(u) for u in router.client.urls)
    ensure_loaded(router.client, target.model, target.adapter_path)
    return target, not loaded_before


def run_cli(args: argparse.Namespace) -> int:
    from shared.config import get_settings

    settings: StudentSettings = get_student_settings()
    tasks = load_dataset(args.dataset)[: args.limit] if args.limit else load_dataset(args.dataset)
    steps = args.steps or settings.steps
    client = VllmClient(
        settings.urls,
        timeout_s=settings.request_timeout_s,
        retry_for_s=settings.retry_for_s,
        max_connections=max(settings.concurrency, 8),
    )
    router = Router(client, settings.served_model_name)
    target, loaded_here = resolve_target(router, args.adapter, args.base)
    run_tests, close = executor_runner()
    try:
        report = evaluate(
            tasks,
            steps=steps,
            samples=args.samples,
            router=router,
            target=target,
            sampling=sampling_params(settings),
            run_tests=run_tests,
            concurrency=settings.concurrency,
        )
    finally:
        close()
        if loaded_here and target.model != active_target(router.base_model).model:
            for url in client.urls:
                client.unload_adapter(url, target.model)
    report = {"dataset": args.dataset, "created_at": datetime.now(UTC).isoformat(), **report}
    out = args.out or (
        get_settings().data_dir
        / "reports"
        / f"eval-{Path(args.dataset).stem.lower()}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(format_summary(report))
    print(f"report: {out}")
    return 0


def format_summary(report: dict[str, Any]) -> str:
    adapter = report["adapter_id"]
    lines = [
        f"{report['dataset']}: {report['tasks']} tasks"
        f" ({report['tasks_with_seen_tests']} with seen tests), {report['samples']} sample(s),"
        f" model {report['model']}" + (f" (adapter {adapter})" if adapter else " (base)"),
    ]
    for row in report["per_step"]:
        scores = "  ".join(f"pass@{k} {row[f'pass@{k}']:.4f}" for k in report["k"])
        lines.append(f"step {row['step']}: {scores}  ({row['generated']} generated)")
    return "\n".join(lines)

"""Acceptance figures of the pretrained student through the real services: a vLLM server started
with ``persd student-server`` on the model, ``persd eval --dataset suite:POOL --steps 3 --base``
greedy, then the share of failed step-1 attempts that pass at least one hidden test (re-run in
the sandbox from the report's code).

    PYTHONPATH=. .venv/bin/python bench/suite_acceptance.py MODEL_DIR [--pool heldout]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.executor.api import ExecutorPool  # noqa: E402
from services.executor.pool import make_job  # noqa: E402
from services.executor.schemas import TestStatus  # noqa: E402
from services.suite import Pool, make_pool  # noqa: E402
from tests.support.vllm import VllmServer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("--pool", default="heldout")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args()
    data = Path(tempfile.mkdtemp(prefix="persd-accept-"))
    server = VllmServer(args.model.resolve(), data, data)
    server.start()
    try:
        out = data / "report.json"
        env = (
            os.environ
            | server.env
            | {
                "PERSD_DATA_DIR": str(data),
                "STUDENT_TEMPERATURE": "0",
                "PYTHONPATH": str(ROOT),
            }
        )
        dataset = f"suite:{args.pool}:{args.seed}"
        cmd = [sys.executable, "-m", "services.cli", "eval", "--dataset", dataset,
               "--steps", str(args.steps), "--base", "--out", str(out)]  # fmt: skip
        subprocess.run(cmd, env=env, cwd=ROOT, check=True)
    finally:
        server.stop()
    report = json.loads(out.read_text())
    tasks = {t.task_id: t for t in make_pool(Pool(args.pool), args.seed)}
    failed = [
        (tasks[p["task_id"]], p["samples"][0][0]["code"])
        for p in report["per_task"]
        if not p["correct_per_step"][0]
    ]
    with ExecutorPool(workers=2) as sandbox:
        results = list(
            sandbox.map(make_job(code, t.hidden_tests, t.entry_point, 3.0) for t, code in failed)
        )
    near = sum(any(r.status is TestStatus.PASSED for r in res.test_results) for res in results)
    lesson = [p["correct_per_step"][0] for p in report["per_task"] if tasks[p["task_id"]].lesson]
    summary = {
        "dataset": dataset,
        "per_step": report["per_step"],
        "step1_failed": len(failed),
        "near_miss_share": round(near / max(1, len(failed)), 3),
        "lesson_tasks_step1_pass": round(sum(lesson) / max(1, len(lesson)), 3),
        "report": str(out),
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

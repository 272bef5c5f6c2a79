"""Pilot for the suite's design: does distillation on the lesson operations transfer?

In process, no services: greedy generation with transformers, tests in the real sandbox, LoRA with
the trainer's own ``train_lora``. It measures, on the validation pool (never the held-out pool:
tuning there would make the held-out figures recall), the pretrained student's pass@1 and near-miss
share, then trains a LoRA adapter on the distill pool's reference bodies for the tasks the student
fails (a stand-in for the teacher's refinements) and measures again.

    PYTHONPATH=. .venv/bin/python bench/suite_pilot.py MODEL_DIR [--pool validation] [--set k=v ...]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from services.executor.api import ExecutorPool
from services.executor.pool import make_job
from services.executor.schemas import TestStatus
from services.student.attempts import STOP
from services.suite import Pool, SuiteTask, make_pool
from shared.prompts import body_of, extract_code, generation_prompt


def generate(
    model, tokenizer, prompts: list[str], batch: int = 48, max_new: int = 100
) -> list[str]:
    import torch

    tokenizer.padding_side = "left"
    out: list[str] = []
    for i in range(0, len(prompts), batch):
        enc = tokenizer(prompts[i : i + batch], return_tensors="pt", padding=True)
        with torch.no_grad():
            gen = model.generate(
                **enc,
                max_new_tokens=max_new,
                do_sample=False,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        for row in gen[:, enc["input_ids"].shape[1] :]:
            text = tokenizer.decode(row, skip_special_tokens=True)
            for stop in STOP:
                text = text.split(stop)[0]
            out.append(text)
    return out


def score(tasks: list[SuiteTask], completions: list[str], sandbox: ExecutorPool) -> dict:
    codes = [
        extract_code(c, t.header, t.entry_point) for t, c in zip(tasks, completions, strict=True)
    ]
    jobs = [
        make_job(c, t.hidden_tests, t.entry_point, 3.0) for t, c in zip(tasks, codes, strict=True)
    ]
    results = list(sandbox.map(jobs))
    passed = [r.passed for r in results]
    near = [
        any(tr.status is TestStatus.PASSED for tr in r.test_results)
        for r in results
        if not r.passed
    ]
    lesson = [p for t, p in zip(tasks, passed, strict=True) if t.lesson]
    plain = [p for t, p in zip(tasks, passed, strict=True) if not t.lesson]
    return {
        "pass@1": sum(passed) / len(tasks),
        "lesson_pass": sum(lesson) / max(1, len(lesson)),
        "plain_pass": sum(plain) / max(1, len(plain)),
        "near_miss_share": sum(near) / max(1, len(near)),
        "passed": passed,
        "codes": codes,
    }


def main() -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from services.trainer.config import TrainerConfig
    from services.trainer.encoding import Pair
    from services.trainer.loop import train_lora

    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("--pool", default="validation")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-size", type=int, default=300)
    ap.add_argument("--distill-size", type=int, default=600)
    ap.add_argument(
        "--config",
        action="append",
        default=[],
        help="trainer overrides as JSON, e.g. '{\"learning_rate\": 1e-3}'; repeat to compare",
    )
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(2)

    evals = make_pool(Pool(args.pool), args.seed, args.eval_size)
    distill = make_pool(Pool.DISTILL, args.seed, args.distill_size)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    report: dict = {"model": str(args.model), "pool": args.pool}
    with ExecutorPool(workers=2) as sandbox:
        t0 = time.monotonic()
        base = score(evals, generate(model, tokenizer, [prompt(t) for t in evals]), sandbox)
        d_base = score(distill, generate(model, tokenizer, [prompt(t) for t in distill]), sandbox)
        report["base"] = {k: v for k, v in base.items() if k not in ("passed", "codes")}
        report["distill_base"] = {k: v for k, v in d_base.items() if k not in ("passed", "codes")}
        report["base_eval_s"] = round(time.monotonic() - t0, 1)
        print(json.dumps(report, indent=2), flush=True)

        failed = [t for t, p in zip(distill, d_base["passed"], strict=True) if not p]
        lessons = [Pair(prompt(t), t.body, i) for i, t in enumerate(failed)]
        # The student's own passing answers on the distill pool: rehearsal material.
        own = [
            Pair(prompt(t), body_of(code, t.header), len(lessons) + i)
            for i, (t, ok, code) in enumerate(
                zip(distill, d_base["passed"], d_base["codes"], strict=True)
            )
            if ok
        ]
        report["runs"] = []
        for overrides in [json.loads(c) for c in args.config] or [{}]:
            overrides = dict(overrides)
            replay = float(overrides.pop("replay_ratio", 0.0))
            pairs = lessons + own[: int(round(replay * len(lessons)))]
            config = TrainerConfig(**overrides)
            overrides["replay_ratio"] = replay
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.monotonic()
                train_lora(config, pairs, Path(tmp), base_model=str(args.model))
                train_s = round(time.monotonic() - t0, 1)
                tuned = PeftModel.from_pretrained(model, tmp).eval()
                prompts = [prompt(t) for t in evals]
                after = score(evals, generate(tuned, tokenizer, prompts), sandbox)
                model = tuned.unload()  # the base again, for the next run
            run = {
                "overrides": overrides,
                "examples": len(pairs),
                "train_s": train_s,
                "after": {k: v for k, v in after.items() if k not in ("passed", "codes")},
                "gain_points": round(100 * (after["pass@1"] - base["pass@1"]), 1),
            }
            report["runs"].append(run)
            print(json.dumps(run, default=str), flush=True)
    print(json.dumps(report, indent=2, default=str))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")


def prompt(task: SuiteTask) -> str:
    return generation_prompt(task.description, task.header)


if __name__ == "__main__":
    main()

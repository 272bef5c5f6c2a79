"""Pilot for the suite's design: does distillation on the lesson operations transfer?

In process, no services: greedy generation with transformers, tests in the real sandbox, LoRA with
the trainer's own ``train_lora``. It measures, on the validation pool (never the held-out pool:
tuning there would make the held-out figures recall), the pretrained student's pass@1 and near-miss
share, then trains a LoRA adapter on the distill pool's reference bodies for the tasks the student
fails (a stand-in for the teacher's refinements) and measures again.

    PYTHONPATH=. .venv/bin/python bench/suite_pilot.py MODEL_DIR [--pool validation] \
        [--config '{"lora_rank": 8, "seed": 1}' ...] [--dump FILE] [--out FILE]

Each ``--config`` is a set of TrainerConfig overrides on top of the experiment's offline trainer
settings (``services/experiment/config.py``'s OFFLINE_TRAINER; ``--trainer-base trainer`` starts
from the trainer's own defaults instead). Three keys are the pilot's own data options, not trainer
fields:

- ``replay_ratio``: add the student's own passing answers on the distill pool, this many per
  lesson example;
- ``pretrain_ratio``: add reference bodies of pretraining-pool tasks (the prefix the student was
  pretrained on), this many per lesson example;
- ``const_aug``: add this many copies of each lesson example with every constant redrawn from
  the operation's training values (never a held-out or validation pair), description and body
  rendered again, so that a constant must be copied from the description rather than recalled.

``--dump FILE`` writes, for each run, the evaluation tasks without a lesson that the base passes
and the tuned model fails (task id, description, reference body, base and tuned code), each with
an automatic classification of what the tuned body got wrong (``classify``).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import tempfile
import time
from pathlib import Path

from services.executor.api import ExecutorPool
from services.executor.pool import make_job
from services.executor.schemas import TestStatus
from services.student.attempts import STOP
from services.suite import Pool, SuiteTask, make_pool
from services.suite.grammar import (
    FAMILIES,
    OPS,
    OPS_BY_KEY,
    ConstantSet,
    Family,
    Op,
    constant_values,
)
from services.suite.tasks import _program, _sentence
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


_CONST = r"(-?\d+|'[^']*'|\"[^\"]*\")"  # an int or a quoted string, as render_code writes them


def _op_pattern(op: Op, var: str) -> re.Pattern:
    """A regex matching one rendered body line of ``op`` (constants captured)."""
    code = re.sub(r"\\\{\d\\\}|\{\d\}", lambda _: _CONST, re.escape(op.code))
    prefix = "return " if op.final else re.escape(var) + " = "
    return re.compile("^" + prefix + code + "$")


_PATTERNS: dict[Family, list[tuple[Op, re.Pattern]]] = {
    fam: [(op, _op_pattern(op, spec.var)) for op in OPS if op.family is fam]
    for fam, spec in FAMILIES.items()
}


def parse_line(line: str, family: Family) -> list[tuple[str, tuple[str, ...], bool]]:
    """Every reading of one body line as (operation name, constants, is a lesson); empty if it
    is no operation. Some lines read two ways (``[x * 3 for x in xs]``: ``triple`` or
    ``mul(3)``)."""
    return [
        (op.name, m.groups(), op.lesson)
        for op, pat in _PATTERNS[family]
        if (m := pat.match(line.strip()))
    ]


def body_lines(code: str, header: str) -> list[str]:
    return [ln.strip() for ln in body_of(code, header).splitlines() if ln.strip()]


CLASS_ORDER = [
    "no_return",
    "lesson_inserted",
    "lesson_substituted",
    "step_duplicated",
    "step_inserted",
    "step_dropped",
    "constant_miscopied",
    "wrong_op",
    "garbled",
    "same_code",
]


def classify(task: SuiteTask, code: str) -> tuple[str, list[str]]:
    """What a failing body got wrong against the reference: (main class, all tags).

    Tags come from a line diff of the tuned body against the reference body: ``no_return``
    (truncated, or no return line), ``lesson_inserted`` (an extra line that reads as a lesson
    operation), ``lesson_substituted`` (a reference line replaced by a lesson operation),
    ``step_duplicated`` (an extra line repeating one of the body's lines), ``step_inserted``
    (another extra line), ``step_dropped``, ``constant_miscopied`` (same operation, other
    constant), ``wrong_op`` (another non-lesson operation), ``garbled`` (a line that is no
    operation), ``same_code`` (no difference: the failure is elsewhere). The main class is the
    first tag in CLASS_ORDER."""
    import difflib

    ref = body_lines(task.reference_solution, task.header)
    got = body_lines(code, task.header)
    tags: set[str] = set()
    if not any(ln.startswith("return ") for ln in got):
        tags.add("no_return")

    def extra(ln: str) -> str:
        readings = parse_line(ln, task.family)
        if not readings:
            return "garbled"
        if ln in ref or got.count(ln) > 1:
            return "step_duplicated"
        return "lesson_inserted" if any(r[2] for r in readings) else "step_inserted"

    sm = difflib.SequenceMatcher(a=ref, b=got, autojunk=False)
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if tag == "equal":
            continue
        old, new = ref[i1:i2], got[j1:j2]
        if tag == "delete":
            tags.add("step_dropped")
        elif tag == "insert":
            tags.update(extra(ln) for ln in new)
        else:  # replace: pair lines up in order; unpaired ones are inserted / dropped
            for k in range(max(len(old), len(new))):
                if k >= len(new):
                    tags.add("step_dropped")
                    continue
                if k >= len(old):
                    tags.add(extra(new[k]))
                    continue
                o = {r[0] for r in parse_line(old[k], task.family)}
                n = parse_line(new[k], task.family)
                if not n:
                    tags.add("garbled")
                elif o & {r[0] for r in n}:
                    tags.add("constant_miscopied")
                elif any(r[2] for r in n):
                    tags.add("lesson_substituted")
                else:
                    tags.add("wrong_op")
    if not tags:
        tags.add("same_code")
    ranked = sorted(tags, key=CLASS_ORDER.index)
    return ranked[0], ranked


def forgotten(tasks: list[SuiteTask], base: dict, after: dict) -> list[dict]:
    """The tasks without a lesson that the base passes and the tuned model fails, classified."""
    cases = []
    for t, ok0, ok1, c0, c1 in zip(
        tasks, base["passed"], after["passed"], base["codes"], after["codes"], strict=True
    ):
        if t.lesson or not ok0 or ok1:
            continue
        main_class, tags = classify(t, c1)
        cases.append(
            {
                "task_id": t.task_id,
                "signature": t.signature,
                "description": t.description,
                "reference_body": t.body,
                "base_code": c0,
                "tuned_code": c1,
                "class": main_class,
                "tags": tags,
            }
        )
    return cases


def main() -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from services.experiment.config import OFFLINE_TRAINER
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
    ap.add_argument(
        "--trainer-base",
        choices=["offline", "trainer"],
        default="offline",
        help="what --config overrides: the experiment's offline trainer settings (default) or"
        " the trainer's own defaults",
    )
    ap.add_argument("--threads", type=int, default=2, help="torch threads (generation, training)")
    ap.add_argument(
        "--base-cache",
        type=Path,
        help="JSON of the base model's answers, written on first use and reused when the model,"
        " pools and sizes match (greedy generation: the same answers again)",
    )
    ap.add_argument("--out", type=Path, help="the report, rewritten after every run")
    ap.add_argument(
        "--dump",
        type=Path,
        help="JSON of the forgotten tasks (without a lesson, base passes, tuned fails) per run",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    evals = make_pool(Pool(args.pool), args.seed, args.eval_size)
    distill = make_pool(Pool.DISTILL, args.seed, args.distill_size)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    report: dict = {"model": str(args.model), "pool": args.pool}
    with ExecutorPool(workers=2) as sandbox:
        t0 = time.monotonic()
        key = {
            "model": str(args.model.resolve()),
            "weights": _weights_stamp(args.model),
            "pool": args.pool,
            "seed": args.seed,
            "eval_size": args.eval_size,
            "distill_size": args.distill_size,
        }
        cached = None
        if args.base_cache and args.base_cache.exists():
            cached = json.loads(args.base_cache.read_text())
            if cached.get("key") != key:
                cached = None
        if cached:
            base_out, d_out = cached["eval"], cached["distill"]
        else:
            base_out = generate(model, tokenizer, [prompt(t) for t in evals])
            d_out = generate(model, tokenizer, [prompt(t) for t in distill])
            if args.base_cache:
                args.base_cache.write_text(
                    json.dumps({"key": key, "eval": base_out, "distill": d_out}) + "\n"
                )
        base = score(evals, base_out, sandbox)
        d_base = score(distill, d_out, sandbox)
        report["base_cached"] = bool(cached)
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
        base_overrides = dict(OFFLINE_TRAINER) if args.trainer_base == "offline" else {}
        base_overrides["cpu_threads"] = args.threads
        report["trainer_base"] = args.trainer_base
        report["runs"] = []
        dumps: list[dict] = []
        for overrides in [json.loads(c) for c in args.config] or [{}]:
            overrides = dict(overrides)
            replay = float(overrides.pop("replay_ratio", 0.0))
            pre_ratio = float(overrides.pop("pretrain_ratio", 0.0))
            n_pre = int(round(pre_ratio * len(lessons)))
            pretrain = [
                Pair(prompt(t), t.body, len(lessons) + len(own) + i)
                for i, t in enumerate(make_pool(Pool.PRETRAIN, args.seed, n_pre) if n_pre else [])
            ]
            aug = int(overrides.pop("const_aug", 0))
            rng = random.Random(1000 + int(overrides.get("seed", 0)))
            augmented = [
                Pair(*redraw_constants(t, rng), 10**6 + k * len(failed) + i)
                for k in range(aug)
                for i, t in enumerate(failed)
            ]
            pairs = lessons + own[: int(round(replay * len(lessons)))] + pretrain + augmented
            config = TrainerConfig(**(base_overrides | overrides))
            overrides["replay_ratio"] = replay
            overrides["pretrain_ratio"] = pre_ratio
            overrides["const_aug"] = aug
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.monotonic()
                train_lora(config, pairs, Path(tmp), base_model=str(args.model))
                train_s = round(time.monotonic() - t0, 1)
                tuned = PeftModel.from_pretrained(model, tmp).eval()
                prompts = [prompt(t) for t in evals]
                after = score(evals, generate(tuned, tokenizer, prompts), sandbox)
                model = tuned.unload()  # the base again, for the next run
            cases = forgotten(evals, base, after)
            classes: dict[str, int] = {}
            for c in cases:
                classes[c["class"]] = classes.get(c["class"], 0) + 1
            plain_gained = sum(
                1
                for t, ok0, ok1 in zip(evals, base["passed"], after["passed"], strict=True)
                if not t.lesson and ok1 and not ok0
            )
            run = {
                "overrides": overrides,
                "examples": len(pairs),
                "lesson_examples": len(lessons),
                "train_s": train_s,
                "after": {k: v for k, v in after.items() if k not in ("passed", "codes")},
                "gain_points": round(100 * (after["pass@1"] - base["pass@1"]), 1),
                "plain_forgotten": len(cases),
                "plain_gained": plain_gained,
                "forgotten_classes": dict(sorted(classes.items(), key=lambda kv: -kv[1])),
            }
            report["runs"].append(run)
            print(json.dumps(run, default=str), flush=True)
            if args.out:
                args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
            if args.dump:
                dumps.append({"overrides": overrides, "cases": cases})
                args.dump.write_text(
                    json.dumps({"model": str(args.model), "runs": dumps}, indent=2) + "\n"
                )
    print(json.dumps(report, indent=2, default=str))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")


def redraw_constants(task: SuiteTask, rng) -> tuple[str, str]:
    """(generation prompt, reference body) of ``task`` with its constants redrawn from training
    values only."""
    import ast

    family_name, _, ops = task.signature.partition(":")
    family = Family(family_name)
    steps = []
    for part in ops.split("|"):
        name, _, rest = part.partition("(")
        op = OPS_BY_KEY[(family, name)]
        consts = ast.literal_eval("(" + rest[:-1] + ",)") if rest else ()
        consts = tuple(
            rng.choice(constant_values(op, slot, ConstantSet.TRAIN)) for slot in range(len(consts))
        )
        steps.append((op, consts))
    header, program = _program(family, steps)
    return generation_prompt(_sentence(steps), header), program[len(header) + 1 :]


def _weights_stamp(model_dir: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    for f in sorted(model_dir.glob("*.safetensors")):
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def prompt(task: SuiteTask) -> str:
    return generation_prompt(task.description, task.header)


if __name__ == "__main__":
    main()

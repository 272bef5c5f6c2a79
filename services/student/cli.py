"""Student commands: build the offline tiny model, run the vLLM server, promote, evaluate."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "build-tiny-student",
        help="build the offline tiny student model (idempotent, seeded)",
    )
    p.add_argument("--out", type=Path, help="target directory (default: STUDENT_MODEL's default)")
    p.add_argument("--force", action="store_true", help="rebuild even if an identical build exists")
    p.add_argument(
        "--pretrained",
        action="store_true",
        help="pretrain the student on the offline suite's pretraining pool (seeded, cached)"
        " instead of the untrained tiny student",
    )
    p.add_argument(
        "--budget",
        choices=["full", "small"],
        default="full",
        help="with --pretrained: full (the acceptance student, <= 20 min on 2 cores) or small"
        " (a few minutes, for tests)",
    )
    p.set_defaults(handler=_build_tiny)

    p = sub.add_parser(
        "student-server",
        help="run the student's vLLM OpenAI-compatible server (LoRA hot-swap enabled)",
    )
    p.add_argument("--host", help="default STUDENT_HOST")
    p.add_argument("--port", type=int, help="default STUDENT_PORT")
    p.add_argument("--print", action="store_true", help="print the vLLM command line only")
    p.add_argument(
        "--no-restore",
        action="store_true",
        help="do not load the active adapter at start (no database needed)",
    )
    p.set_defaults(handler=_server)

    p = sub.add_parser(
        "student-promote",
        help="hot-swap an adapter version into every student replica (rollback: an older one)",
    )
    p.add_argument("adapter", type=int, help="adapter version id")
    p.add_argument("--reason", default="manual")
    p.add_argument("--timeout", type=float, default=300.0)
    p.set_defaults(handler=_promote)

    p = sub.add_parser("eval", help="pass@k of the student per inference step on a benchmark")
    p.add_argument(
        "--dataset",
        required=True,
        help="'humaneval', 'suite:POOL[:SEED]' (the offline suite, e.g. suite:heldout), or a path"
        " to MBPP-format JSONL (text, code, test_list)",
    )
    p.add_argument("--steps", type=int, help="inference steps (default STUDENT_STEPS)")
    p.add_argument("--samples", type=int, default=1, help="samples per task (n of pass@k)")
    p.add_argument("--adapter", help="adapter version id or name (default: the active one)")
    p.add_argument("--base", action="store_true", help="evaluate the base model, no adapter")
    p.add_argument("--limit", type=int, help="only the first N tasks")
    p.add_argument("--out", type=Path, help="JSON report path (default under the data dir)")
    p.set_defaults(handler=_eval)


def _build_tiny(args: argparse.Namespace) -> int:
    if args.pretrained:
        return _build_pretrained(args)
    from services.student.tiny_model import build_tiny_student, is_built
    from shared.student_settings import default_tiny_student_dir

    target = (args.out or default_tiny_student_dir()).resolve()
    if is_built(target) and not args.force:
        print(f"tiny student up to date: {target}")
        return 0
    build_tiny_student(target, force=args.force)
    print(f"tiny student built: {target}")
    return 0


def _build_pretrained(args: argparse.Namespace) -> int:
    from services.student.pretrain import (
        PRESETS,
        TRAIN_LOG,
        Budget,
        build_pretrained_student,
        is_built,
        pretrained_student_dir,
    )

    budget = Budget(args.budget)
    spec = PRESETS[budget]
    target = (args.out or pretrained_student_dir(budget)).resolve()
    if is_built(target, spec) and not args.force:
        print(f"pretrained student ({budget}) up to date: {target}")
        return 0
    build_pretrained_student(target, spec, force=args.force)
    log = json.loads((target / TRAIN_LOG).read_text())
    print(
        f"pretrained student ({budget}) built: {target}\n"
        f"  {log['steps']} steps, {log['tokens']} tokens in {log['wall_s']} s"
        f" ({log['tokens_per_s']} tokens/s), final loss {log['final_loss']}"
    )
    return 0


def _server(args: argparse.Namespace) -> int:
    from services.student.server import own_url, server_argv, server_env, supervise
    from services.student.tiny_model import build_tiny_student, is_built
    from shared.config import get_settings, load
    from shared.student_settings import StudentSettings, default_tiny_student_dir

    overrides = {k: v for k, v in {"host": args.host, "port": args.port}.items() if v}
    settings = load(StudentSettings).model_copy(update=overrides)
    argv = server_argv(settings)
    if args.print:
        print(" ".join(argv))
        return 0
    if not settings.model and not is_built(default_tiny_student_dir()):
        # The default student must exist before vLLM looks for it.
        build_tiny_student(default_tiny_student_dir())
    env = server_env(settings, get_settings().data_dir)
    sys.stdout.flush()
    if args.no_restore:
        os.execve(argv[0], argv, env)
    return supervise(argv, env, own_url(settings))


def _promote(args: argparse.Namespace) -> int:
    from shared.registry import send_promotion

    # The hot-swap applies shared.registry's policy itself (status, then hash).
    reply = send_promotion(args.adapter, args.reason, args.timeout).get(timeout=args.timeout)
    print(reply.model_dump_json(indent=2))
    return 0 if reply.promoted else 1


def _eval(args: argparse.Namespace) -> int:
    from services.student.evaluation import run_cli

    return run_cli(args)

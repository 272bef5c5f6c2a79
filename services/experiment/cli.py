"""``persd experiment`` (run or resume) and ``persd experiment-report`` (rewrite the reports
from the stored rows)."""

from __future__ import annotations

import argparse
from pathlib import Path

from services.experiment.config import OFFLINE_TRAINER, PRESETS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "experiment",
        help="base vs StanD vs the PERsD variants on held-out tasks, through the running stack",
        description="Sends the distillation pool through the running pipeline once, trains every"
        " arm point (arm x example count x seed) with the trainer's code into never-promoted"
        " adapter versions, scores each on the held-out pool with multi-step inference and"
        " writes JSON and HTML reports. Re-running the same --name resumes.",
    )
    p.add_argument("--preset", choices=sorted(PRESETS), default="full")
    p.add_argument("--name", help="experiment name (default: the preset's)")
    p.add_argument(
        "--arms",
        default="base,stand,persd,persd_refine,persd_combined",
        help="comma-separated: base, stand, persd, persd_refine, persd_combined",
    )
    p.add_argument("--counts", help="teacher-answered tasks per trained point, e.g. 20,60")
    p.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1,2")
    p.add_argument("--steps", type=int, default=3, help="multi-step inference steps scored")
    p.add_argument("--distill", help="distillation pool: suite, humaneval or an MBPP JSONL file")
    p.add_argument("--heldout", help="held-out pool: suite, humaneval or an MBPP JSONL file")
    p.add_argument("--distill-size", type=int)
    p.add_argument("--heldout-size", type=int)
    p.add_argument("--suite-seed", type=int, help="the task suite's generator seed")
    p.add_argument(
        "--student-model", help="must be what the stack's vLLM serves (default: STUDENT_MODEL)"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a trainer setting for every arm, e.g. learning_rate=2e-4 (TrainerConfig fields)",
    )
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument(
        "--pretrain-rehearsal",
        type=float,
        help="suite pretraining tasks trained on per distillation example (default: the"
        " preset's; 0 turns it off)",
    )
    p.add_argument("--traffic-timeout", type=float, default=3600.0, help="seconds")
    p.add_argument("--out", type=Path, help="report directory (default: $PERSD_DATA_DIR/reports)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=_run)

    r = sub.add_parser("experiment-report", help="rewrite an experiment's JSON and HTML reports")
    r.add_argument("name", help="experiment name or id")
    r.add_argument("--out", type=Path)
    r.set_defaults(handler=_report)


def _value(text: str):
    import json

    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def build_config(args: argparse.Namespace):
    from services.experiment.config import parse_arms, parse_ints
    from services.teacher.settings import get_teacher_settings
    from services.trainer.config import load_config
    from shared.enums import TeacherBackend
    from shared.errors import InvalidInput
    from shared.schemas.experiments import ExperimentConfig
    from shared.student_settings import get_student_settings

    preset = PRESETS[args.preset]
    pools = preset["pools"].model_copy(
        update={
            k: v
            for k, v in {
                "distill": args.distill,
                "heldout": args.heldout,
                "distill_size": args.distill_size,
                "heldout_size": args.heldout_size,
                "suite_seed": args.suite_seed,
            }.items()
            if v is not None
        }
    )
    overrides = dict(OFFLINE_TRAINER)
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidInput(f"--set {item!r}: expected KEY=VALUE")
        overrides[key.strip()] = _value(value)
        if key.strip() == "lora_target_modules" and isinstance(overrides[key.strip()], str):
            overrides[key.strip()] = [m for m in value.split(",") if m]
    # The full trainer settings are part of the experiment: a resume must train the same way.
    trainer = load_config(**overrides).snapshot()
    for field in ("seed", "variant_mix", "base_model", "request_id"):
        trainer.pop(field, None)
    teacher = get_teacher_settings()
    return ExperimentConfig(
        name=args.name or args.preset,
        arms=parse_arms(args.arms),
        counts=parse_ints(args.counts, "--counts") if args.counts else preset["counts"],
        seeds=parse_ints(args.seeds, "--seeds") if args.seeds else preset["seeds"],
        steps=args.steps,
        pools=pools,
        student_model=args.student_model or get_student_settings().model_path,
        teacher_backend=TeacherBackend.OPENAI if teacher.uses_api else TeacherBackend.REFERENCE,
        trainer=trainer,
        max_new_tokens=args.max_new_tokens,
        # The preset's rehearsal is the suite's; given explicitly for another pool, check()
        # refuses it.
        pretrain_rehearsal=(
            args.pretrain_rehearsal
            if args.pretrain_rehearsal is not None
            else preset["pretrain_rehearsal"]
            if pools.distill == "suite"
            else 0.0
        ),
    )


def _out(args: argparse.Namespace) -> Path:
    from shared.config import get_settings

    return args.out or get_settings().data_dir / "reports"


def _run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from services.experiment.runner import Options, run
    from shared.errors import InvalidInput

    try:
        config = build_config(args)
    except ValidationError as exc:
        raise InvalidInput(
            "invalid experiment: "
            + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        ) from None
    experiment_id, json_path, html_path = run(
        config,
        Options(
            out_dir=_out(args),
            traffic_timeout_s=args.traffic_timeout,
            progress=not args.no_progress,
        ),
    )
    _print_summary(experiment_id)
    print(f"report: {json_path}\nreport: {html_path}")
    return 0


def _print_summary(experiment_id: int) -> None:
    from services.experiment import report
    from shared.db import session_scope

    with session_scope() as session:
        built = report.build(session, experiment_id)
    for p in built.points:
        name = p.arm.value if p.count == 0 else f"{p.arm.value}@{p.count}"
        steps = "  ".join(
            f"s{f.step} {100 * f.mean:.1f}% [{100 * f.low:.1f},{100 * f.high:.1f}]"
            for f in p.pass_at_1
        )
        print(f"{name:<22} seeds {len(p.seeds)}  {steps}")
    print(f"wall {built.wall_s / 60:.1f} min, status {built.status.value}")


def _report(args: argparse.Namespace) -> int:
    from services.experiment.report import _get
    from services.experiment.runner import write_reports
    from shared.db import session_scope

    with session_scope() as session:
        experiment_id = _get(session, args.name).id
    json_path, html_path = write_reports(experiment_id, _out(args))
    _print_summary(experiment_id)
    print(f"report: {json_path}\nreport: {html_path}")
    return 0

"""Operator commands: ``persd train --now`` and ``persd adapters list|forgotten|promote|rollback``.

Argument parsing only; the work is in :func:`services.trainer.runs.main` (a run) and
:mod:`services.trainer.versions` (the registry).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.schemas.retention import RetentionPoint


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="start a training run now (trainer worker or this process)")
    p.add_argument(
        "--now",
        action="store_true",
        required=True,
        help="run now, whatever the trigger says (there is no other mode; beat runs the trigger)",
    )
    p.add_argument(
        "--here",
        action="store_true",
        help="train in this process instead of sending trainer.train to the trainer worker"
        " (same lock: never concurrent with the worker)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a trainer setting for this run (with --here), e.g. --set epochs=5",
    )
    p.add_argument(
        "--threads",
        type=int,
        help="torch threads for CPU training in this process (with --here; default: the cores"
        " the rest of the stack leaves free, TRAINER_CPU_THREADS)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the reply")
    p.set_defaults(handler=_train)

    p = sub.add_parser("adapters", help="the adapter registry: list, forgotten, promote, rollback")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    v = verbs.add_parser(
        "list",
        help="every version with status, parent, hash, gate figures and retention (pass@1 on"
        " lessons, abilities, probes; drift from the base)",
    )
    v.add_argument("--json", action="store_true", help="machine-readable output")
    v.set_defaults(handler=_list)
    v = verbs.add_parser(
        "forgotten",
        help="the lessons and abilities a version fails that the latest earlier version of its"
        " lineage to measure them passed",
    )
    v.add_argument("version", help="adapter id or name")
    v.add_argument("--json", action="store_true", help="machine-readable output")
    v.set_defaults(handler=_forgotten)
    v = verbs.add_parser("promote", help="make a version active (hot-swap into the student)")
    v.add_argument("version", help="adapter id or name")
    v.add_argument("--reason", default="promoted by an operator")
    v.add_argument("--timeout", type=float, default=300.0)
    v.set_defaults(handler=_promote)
    v = verbs.add_parser("rollback", help="make an earlier ready or retired version active again")
    v.add_argument("version", nargs="?", help="adapter id or name (default: the previous one)")
    v.add_argument("--timeout", type=float, default=300.0)
    v.set_defaults(handler=_rollback)


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings to keyword overrides; values are JSON when they parse as JSON."""
    from shared.errors import InvalidInput

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"--set expects KEY=VALUE, got {pair!r}")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        out[key.strip()] = value
    return out


def _train(args: argparse.Namespace) -> int:
    import threading
    import uuid

    from services.trainer.watch import follow, from_database
    from shared.enums import TrainingRunStatus, TrainingTrigger
    from shared.errors import InvalidInput

    overrides = parse_overrides(args.set)
    if args.threads is not None:
        if args.threads < 1:
            raise InvalidInput(f"--threads must be at least 1, got {args.threads}")
        overrides["cpu_threads"] = args.threads
    if overrides and not args.here:
        raise InvalidInput(
            "--set and --threads apply to a run in this process; add --here (the worker uses its"
            " own environment's TRAINER_ settings)"
        )
    if args.here:
        from services.trainer.config import load_config
        from services.trainer.runs import main

        config = load_config(**overrides)
        request_id = f"cli-{uuid.uuid4().hex}"
        done: dict = {}
        worker = threading.Thread(
            target=lambda: done.setdefault(
                "reply", main(config, TrainingTrigger.MANUAL, request_id=request_id)
            )
        )
        worker.start()
        if args.no_progress:
            worker.join()
        else:
            follow(from_database(request_id), lambda: not worker.is_alive())
        reply = done["reply"].reply()
    else:
        import time

        from shared.queues import TRAINER_TRAIN
        from shared.schemas.messages import TrainRequest

        sent = TRAINER_TRAIN.send(TrainRequest(trigger=TrainingTrigger.MANUAL))
        deadline = time.monotonic() + args.timeout
        if not args.no_progress:
            follow(
                from_database(sent.id),
                lambda: sent.result.ready() or time.monotonic() > deadline,
            )
        reply = sent.get(timeout=max(0.1, deadline - time.monotonic()))
    status = reply.status.value if reply.status else "not started"
    run = f"run {reply.run_id}" if reply.run_id else "no run"
    print(f"{run}: {status}: {reply.detail}")
    return 0 if reply.status in (TrainingRunStatus.PROMOTED, TrainingRunStatus.REJECTED) else 1


def _list(args: argparse.Namespace) -> int:
    from services.api.serving.retention import latest_points
    from services.trainer.versions import list_versions
    from shared.db import session_scope
    from shared.registry import get_active

    with session_scope() as session:
        active = get_active(session)
        versions = list_versions(session)
        points = latest_points(session, versions)
        rows = [_row(a, active.id if active else None, points.get(a.id)) for a in versions]
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    if not rows:
        print("no adapter versions yet")
        return 0
    print(
        f"{'id':>4}  {'':1} {'status':<10} {'parent':>6}  {'hash':<12}  {'gate':<44}"
        f"  {'lessons':>7} {'abilities':>9} {'probes':>6} {'drift':>7}  name"
    )
    for r in rows:
        mark = "*" if r["active"] else ""
        parent = r["parent_id"] if r["parent_id"] is not None else "-"
        ret = r["retention"]
        print(
            f"{r['id']:>4}  {mark:1} {r['status']:<10} {parent!s:>6}  {r['content_hash'][:12]:<12}"
            f"  {r['gate_summary']:<44}  {ret['lessons']:>7} {ret['abilities']:>9}"
            f" {ret['probes']:>6} {ret['drift']:>7}  {r['name']}"
        )
    return 0


def _retention_cells(point: RetentionPoint | None) -> dict[str, str | None]:
    """pass@1 per retention set (``0.75``) and drift (``+0.021``) of a version's point
    (services/api/serving/retention.py), ``-`` where not measured, and the occasion measured."""
    from shared.enums import RetentionKind

    figures = {s.kind: s.pass_at_1 for s in point.sets} if point is not None else {}
    cells: dict[str, str | None] = {
        kind.value: "-" if figures.get(kind) is None else format(figures[kind], ".2f")
        for kind in RetentionKind
    }
    drift = point.drift_nll if point is not None else None
    cells["drift"] = "-" if drift is None else format(drift, "+.3f")
    cells["occasion"] = point.occasion.value if point is not None else None
    return cells


def _row(adapter, active_id: int | None, point: RetentionPoint | None = None) -> dict[str, Any]:
    gate = adapter.metrics.gate
    summary = "-"
    if gate is not None:
        c, a = gate.candidate, gate.active

        def fmt(v, spec):
            return format(v, spec) if v is not None else "n/a"

        summary = (
            f"nll {fmt(c.nll, '.3f')}/{fmt(a.nll, '.3f')}"
            f" pass {fmt(c.pass_at_1, '.2f')}/{fmt(a.pass_at_1, '.2f')}"
            f" {'pass' if gate.promote else 'fail'}"
        )
    return {
        "id": adapter.id,
        "name": adapter.name,
        "status": adapter.status.value,
        "active": adapter.id == active_id,
        "parent_id": adapter.parent_id,
        "content_hash": adapter.content_hash,
        "artifact_path": adapter.artifact_path,
        "created_at": adapter.created_at,
        "status_reason": adapter.status_reason,
        "gate_summary": summary,
        "retention": _retention_cells(point),
    }


def _forgotten(args: argparse.Namespace) -> int:
    from services.api.serving.retention import retention_view
    from shared.db import session_scope
    from shared.enums import RetentionOccasion
    from shared.registry import get_adapter

    with session_scope() as session:
        adapter = get_adapter(session, args.version)
        view = retention_view(session, adapter)
        label = f"v{adapter.id} ({adapter.name})"
    point = next((p for p in view.lineage if p.adapter_id == view.adapter_id), None)
    if point is None:
        # Not "forgot nothing": nobody has measured it yet.
        print(f"persd: {label} has no retention measurement yet", file=sys.stderr)
        return 1
    if args.json:
        print(view.model_dump_json(include={"adapter_id", "forgotten"}, indent=2))
        return 0
    occasion = "after promotion" if point.occasion == RetentionOccasion.PROMOTION else "at the gate"
    when = f"measured {occasion}, {point.measured_at:%Y-%m-%d %H:%M} UTC"
    if not view.forgotten:
        print(f"{label} forgot nothing its lineage knew ({when})")
        return 0
    names = {p.adapter_id: p.version_name for p in view.lineage}
    print(f"{label} forgot {len(view.forgotten)} task(s) its lineage knew ({when}):")
    print(f"{'set':<10} {'task':>8} {'refinement':>10}  last passed by")
    for t in view.forgotten:
        by = (
            "base"
            if t.last_passed_by is None
            else f"v{t.last_passed_by} ({names[t.last_passed_by]})"
        )
        ref = t.refinement_id if t.refinement_id is not None else "-"
        print(f"{t.kind.value:<10} {t.task_id:>8} {ref!s:>10}  {by}")
    return 0


def _print_promotion(reply) -> int:
    state = "promoted" if reply.promoted else "NOT promoted"
    print(f"adapter {reply.adapter_id} {state}; active: {reply.active_adapter_id}; {reply.detail}")
    return 0 if reply.promoted else 1


def _promote(args: argparse.Namespace) -> int:
    from services.trainer.versions import promote

    return _print_promotion(promote(args.version, reason=args.reason, timeout_s=args.timeout))


def _rollback(args: argparse.Namespace) -> int:
    from services.trainer.versions import rollback

    return _print_promotion(rollback(args.version, timeout_s=args.timeout))


if __name__ == "__main__":  # pragma: no cover
    from services.cli import main

    sys.exit(main())

"""One training run, end to end: ``main(config, trigger)``.

    lock (Redis lease) ─► recover dead runs ─► trigger still due? ─► select examples ─► run row
      ─► train LoRA (heartbeat) ─► publish artifact ─► version row (evaluating) ─► verify hash
      ─► gate (candidate loaded into vLLM under its name) ─► ready / rejected
      ─► student.promote (hot-swap) ─► promoted / failed

``main`` takes a :class:`TrainerConfig` and nothing from the command line: the Celery task, the
CLI and the benchmark call it with a config they built. Every outcome is stored on the run row
(status, loss curve, gate figures and decision, error); a failure at any step leaves the run
``failed`` with the reason, its version (if any) ``failed``, the staging files removed, and the
active alias untouched.

Idempotent: a run started for a Celery message records the message id; a redelivered message
finds that run and reports it instead of training again.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from services.trainer import artifacts, recovery, selection, trigger, versions
from services.trainer.config import TrainerConfig
from services.trainer.evaluation import run_gate
from services.trainer.gate import Contender, RunPrograms
from services.trainer.lease import LeaseLost, LockBusy, TrainingLease
from services.trainer.loop import StepInfo
from shared.db import session_scope
from shared.enums import AdapterStatus, TrainingPhase, TrainingRunStatus, TrainingTrigger
from shared.errors import Conflict, PersdError
from shared.events import TrainingProgressed, TrainingRunChanged, publish, publish_after_commit
from shared.models import TrainingRun
from shared.models.base import utcnow
from shared.registry import get_active, mark_failed
from shared.schemas.messages import TrainReply
from shared.schemas.progress import TrainingProgress
from shared.schemas.training import AdapterMetrics, LossPoint, TrainingMetrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    run_id: int | None
    status: TrainingRunStatus | None
    detail: str

    def reply(self) -> TrainReply:
        return TrainReply(run_id=self.run_id, status=self.status, detail=self.detail[:2000])


@dataclass
class Hooks:
    """Seams around a run. ``client``, ``run_programs`` and ``served_base_name`` default to the
    real student server and executor; ``on_phase`` is told when training, evaluation and
    promotion start (tests use it to tamper with an artifact at a chosen moment)."""

    client: Any = None
    run_programs: RunPrograms | None = None
    served_base_name: str | None = None
    on_phase: Callable[[str, int], None] | None = None  # (phase, run_id), for tests and benches


class _Clock:
    """Seconds spent in each phase of a run, stored with its version (the benchmark reads it)."""

    def __init__(self) -> None:
        self.marks: dict[str, float] = {}
        self._last = time.monotonic()

    def mark(self, phase: str) -> None:
        now = time.monotonic()
        self.marks[phase] = round(now - self._last, 3)
        self._last = now


# Live progress goes to the run row (and an SSE event) at most this often: a step can take
# milliseconds, and a write per step would make the database the bottleneck.
PROGRESS_INTERVAL_S = 0.5


class _Progress:
    """The loss curve and live progress so far, shared with the heartbeat and progress threads,
    and the lease check."""

    def __init__(self, lease: TrainingLease, run_id: int) -> None:
        self.lease = lease
        self.run_id = run_id
        self.curve: list[LossPoint] = []
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._state = TrainingProgress(phase=TrainingPhase.PREPARING, updated_at=utcnow())
        self._version = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._write_loop, name="progress", daemon=True)

    def step(self, info: StepInfo) -> None:
        with self._lock:
            self.curve.append(LossPoint(step=info.step, epoch=info.epoch, loss=round(info.loss, 6)))
            rate = info.tokens / info.seconds if info.seconds > 0 else None
            per_step = info.seconds / info.step if info.step else None
            self._update(
                phase=TrainingPhase.TRAINING,
                step=info.step,
                total_steps=info.total_steps,
                epoch=info.epoch,
                epochs=info.epochs,
                loss=round(info.loss, 6),
                tokens_per_s=round(rate, 1) if rate is not None else None,
                eta_s=round(per_step * (info.total_steps - info.step), 1) if per_step else None,
            )
        self.lease.check()

    def phase(self, phase: TrainingPhase, **fields: Any) -> None:
        with self._lock:
            self._update(phase=phase, **({"eta_s": None} | fields))

    def gate(self, side: str, done: int, total: int) -> None:
        """The executor's verdicts on one side's held-out programs so far."""
        self.phase(TrainingPhase.EVALUATING, gate_side=side, gate_done=done, gate_total=total)

    def _update(self, **fields: Any) -> None:
        elapsed = round(time.monotonic() - self._started, 1)
        self._state = self._state.model_copy(
            update=fields | {"elapsed_s": elapsed, "updated_at": utcnow()}
        )
        self._version += 1

    def snapshot(self) -> list[LossPoint]:
        with self._lock:
            return list(self.curve)

    def current(self) -> TrainingProgress:
        with self._lock:
            return self._state

    # ------------------------------------------------------------------ the writer thread

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._write()  # the last state stays on the row

    def _write_loop(self) -> None:
        written = -1
        while not self._stop.wait(PROGRESS_INTERVAL_S):
            if self._version != written:
                written = self._version
                self._write()

    def _write(self) -> None:
        current = self.current()
        state = current.model_dump(mode="json")
        try:
            with session_scope() as session:
                session.execute(
                    update(TrainingRun).where(TrainingRun.id == self.run_id).values(progress=state)
                )
        except Exception as exc:  # noqa: BLE001 - progress is a view; the run goes on
            log.warning("could not record the progress of run %s: %s", self.run_id, exc)
            return
        publish(TrainingProgressed(run_id=self.run_id, progress=current))


def _heartbeat(run_id: int, lease_s: float, progress: _Progress) -> bool:
    """Move the run's database lease with the lock and publish progress; False when the run is
    no longer ours (recovery failed it)."""
    with session_scope() as session:
        result = session.execute(
            update(TrainingRun)
            .where(TrainingRun.id == run_id, TrainingRun.status == TrainingRunStatus.RUNNING)
            .values(
                lease_expires_at=utcnow() + timedelta(seconds=lease_s),
                loss_curve=progress.snapshot(),
            )
        )
        return result.rowcount == 1


def _finish(run_id: int, status: TrainingRunStatus, **values: Any) -> bool:
    """Compare-and-set the run from running to its final status."""
    with session_scope() as session:
        run = session.get(TrainingRun, run_id, with_for_update=True)
        if run is None or run.status != TrainingRunStatus.RUNNING:
            return False
        now = utcnow()
        run.status = status
        run.finished_at = now
        run.lease_expires_at = None
        started = (
            run.started_at if run.started_at.tzinfo else run.started_at.replace(tzinfo=now.tzinfo)
        )
        run.duration_s = (now - started).total_seconds()
        for key, value in values.items():
            setattr(run, key, value)
        if status == TrainingRunStatus.FAILED and run.adapter_id is not None:
            versions.set_status(
                session,
                run.adapter_id,
                AdapterStatus.FAILED,
                f"training run {run_id} failed: {values.get('error', '')}",
                only_from=(AdapterStatus.TRAINING, AdapterStatus.EVALUATING),
            )
        publish_after_commit(session, TrainingRunChanged(run_id=run_id, status=status))
        return True


def find_by_request(request_id: str) -> TrainingRun | None:
    with session_scope() as session:
        return session.execute(
            select(TrainingRun)
            .where(TrainingRun.config["request_id"].as_string() == request_id)
            .order_by(TrainingRun.id.desc())
            .limit(1)
        ).scalar_one_or_none()


def main(
    config: TrainerConfig,
    trigger_name: TrainingTrigger = TrainingTrigger.MANUAL,
    *,
    request_id: str | None = None,
    inside_task: bool = False,
    hooks: Hooks | None = None,
) -> Outcome:
    """Run one training cycle if it is due (always for ``manual``). Never raises for a failed
    run: the outcome says what happened and the run row keeps the details."""
    trigger_name = TrainingTrigger(trigger_name)  # a plain "manual" is fine; "daily" is named
    hooks = hooks or Hooks()
    if request_id is not None:
        done = find_by_request(request_id)
        if done is not None:
            return Outcome(
                done.id, done.status, f"message {request_id} already started run {done.id}"
            )
    with session_scope() as session:
        recovery.fail_expired(session)
    lease = TrainingLease(config.lease_s, label=f"{socket.gethostname()}:{os.getpid()}")
    try:
        lease.acquire()
    except LockBusy as exc:
        return Outcome(None, None, exc.message)
    try:
        return _locked(config, trigger_name, request_id, inside_task, hooks, lease)
    finally:
        lease.release()


def _locked(
    config: TrainerConfig,
    trigger_name: TrainingTrigger,
    request_id: str | None,
    inside_task: bool,
    hooks: Hooks,
    lease: TrainingLease,
) -> Outcome:
    """The run, holding the lock: select, then train, store, register, gate and promote."""
    with session_scope() as session:
        orphans = recovery.fail_orphans(session)
    swept = artifacts.sweep_staging(config.resolved_adapter_dir)
    if orphans or swept:
        log.warning("recovered runs %s, removed staging %s", orphans, swept)

    selected = _select(config, trigger_name, request_id)
    if isinstance(selected, Outcome):
        return selected
    cycle = _Cycle(config, selected, inside_task, hooks, lease)
    return cycle.run()


@dataclass(frozen=True)
class _Selected:
    """What :func:`_select` chose: the new run's row and what it trains on."""

    run_id: int
    chosen: selection.Selection
    parent_path: str | None
    parent_hash: str | None


def _select(
    config: TrainerConfig, trigger_name: TrainingTrigger, request_id: str | None
) -> _Selected | Outcome:
    """Phase 1: is the trigger still due, which examples, which parent; then the run row."""
    base_model = config.resolved_base_model
    with session_scope() as session:
        if trigger_name is not TrainingTrigger.MANUAL:
            state = trigger.evaluate(session, config)
            if not state.due:
                return Outcome(None, None, state.detail)
            trigger_name = state.reason
        parent = get_active(session) if config.init_from == "active" else None
        if parent is not None and parent.base_model != base_model:
            parent = None  # trained on another base model: its weights do not fit this one
        chosen = selection.select_training(session, config, parent)
        if not chosen.pairs:
            return Outcome(
                None,
                None,
                f"nothing to train: no {config.variant_mix} training examples"
                + (f" newer than example {chosen.since_id}" if chosen.since_id else ""),
            )
        run = TrainingRun(
            status=TrainingRunStatus.RUNNING,
            trigger=trigger_name,
            config=config.snapshot()
            | {
                "request_id": request_id,
                "parent_adapter_id": chosen.parent_id,
                "examples_since_id": chosen.since_id,
                "examples_rehearsed": chosen.rehearsed,
            },
            examples_used=len(chosen.pairs),
            examples_through_id=chosen.through_id,
            lease_expires_at=utcnow() + timedelta(seconds=config.lease_s),
        )
        session.add(run)
        session.flush()
        publish_after_commit(
            session, TrainingRunChanged(run_id=run.id, status=TrainingRunStatus.RUNNING)
        )
        return _Selected(
            run.id,
            chosen,
            parent.artifact_path if parent is not None else None,
            parent.content_hash if parent is not None else None,
        )


class _Cycle:
    """Phases 2-6 of one run, each a method; :meth:`run` turns any failure into a failed run."""

    def __init__(
        self,
        config: TrainerConfig,
        selected: _Selected,
        inside_task: bool,
        hooks: Hooks,
        lease: TrainingLease,
    ) -> None:
        self.config = config
        self.selected = selected
        self.run_id = selected.run_id
        self.inside_task = inside_task
        self.hooks = hooks
        self.lease = lease
        self.root = config.resolved_adapter_dir
        self.base_model = config.resolved_base_model
        self.progress = _Progress(lease, self.run_id)
        self.clock = _Clock()
        self.staging: Path | None = None
        self.trained = False

    def run(self) -> Outcome:
        run_id = self.run_id
        self.lease.on_beat = lambda: _heartbeat(run_id, self.config.lease_s, self.progress)
        self.progress.start()
        try:
            result = self.train()
            artifact = self.store()
            adapter_id = self.register(result, artifact)
            gate = self.gate(adapter_id, artifact)
            if not gate.decision.promote:
                return self.reject(adapter_id, gate)
            return self.promote(adapter_id, gate)
        except Exception as exc:  # noqa: BLE001 - every failure ends the run with its reason
            error = exc.message if isinstance(exc, PersdError) else f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, PersdError):
                log.exception("training run %s failed", run_id)
            # A run that died in training keeps the curve it got that far (the heartbeat's copy).
            extra = {} if self.trained else {"loss_curve": self.progress.snapshot()}
            _finish(run_id, TrainingRunStatus.FAILED, error=error, **extra)
            return Outcome(run_id, TrainingRunStatus.FAILED, error)
        finally:
            self.progress.stop()
            if self.staging is not None:
                shutil.rmtree(self.staging, ignore_errors=True)

    def train(self):
        """Phase 2: LoRA training into a fresh staging directory (the parent's files checked)."""
        sel = self.selected
        if sel.parent_path is not None:
            artifacts.verify(sel.parent_path, sel.parent_hash)
        self.staging = artifacts.new_staging_dir(self.root)
        _phase(self.hooks, "training", self.run_id)
        result = _train(
            self.config,
            sel.chosen.pairs,
            self.staging,
            self.base_model,
            sel.parent_path,
            self.progress.step,
        )
        self.lease.check()
        return result

    def store(self) -> artifacts.Published:
        """Phase 3: publish the staging directory as the version's artifact."""
        run_id = self.run_id
        published = artifacts.publish(
            self.staging, self.root, lambda h: versions.version_name(run_id, h)
        )
        self.staging = None
        self.trained = True
        self.clock.mark("train_s")
        return published

    def register(self, result, artifact: artifacts.Published) -> int:
        """Phase 4: the version row (evaluating), linked to the run with its loss curve."""
        with session_scope() as session:
            adapter = versions.register(
                session,
                name=artifact.name,
                base_model=self.base_model,
                artifact_path=str(artifact.path),
                content_hash=artifact.digest,
                parent_id=self.selected.chosen.parent_id,
                metrics=AdapterMetrics(training=_training_metrics(result)),
            )
            updated = session.execute(
                update(TrainingRun)
                .where(
                    TrainingRun.id == self.run_id, TrainingRun.status == TrainingRunStatus.RUNNING
                )
                .values(
                    adapter_id=adapter.id,
                    loss_curve=result.loss_curve,
                    examples_used=result.examples,
                )
            )
            if updated.rowcount != 1:
                raise LeaseLost(f"run {self.run_id} was failed by recovery while it trained")
            return adapter.id

    def gate(self, adapter_id: int, artifact: artifacts.Published):
        """Phase 5: the held-out comparison of candidate and active version."""
        self.progress.phase(TrainingPhase.EVALUATING)
        _phase(self.hooks, "evaluating", self.run_id)
        # The files are checked again right before the gate: a version is judged (and later
        # loaded) only if it is byte for byte what was registered.
        artifacts.verify(artifact.path, artifact.digest)
        gate = run_gate(
            self.config,
            self.base_model,
            Contender(adapter_id, artifact.name, str(artifact.path)),
            client=self.hooks.client,
            run_programs=self.hooks.run_programs,
            served_base_name=self.hooks.served_base_name,
            inside_task=self.inside_task,
            on_progress=self.progress.gate,
        )
        self.lease.check()
        self.clock.mark("gate_s")
        return gate

    def reject(self, adapter_id: int, gate) -> Outcome:
        record = gate.record(self.config)
        with session_scope() as session:
            versions.set_status(
                session,
                adapter_id,
                AdapterStatus.REJECTED,
                gate.decision.reason,
                only_from=(AdapterStatus.EVALUATING,),
            )
            _merge_metrics(session, adapter_id, gate=record, timings=self.clock.marks)
        _finish(self.run_id, TrainingRunStatus.REJECTED, gate=record)
        return Outcome(self.run_id, TrainingRunStatus.REJECTED, gate.decision.reason)

    def promote(self, adapter_id: int, gate) -> Outcome:
        """Phase 6: mark the version ready and ask the student to hot-swap it in."""
        run_id = self.run_id
        record = gate.record(self.config)
        with session_scope() as session:
            versions.set_status(
                session,
                adapter_id,
                AdapterStatus.READY,
                gate.decision.reason,
                only_from=(AdapterStatus.EVALUATING,),
            )
            _merge_metrics(session, adapter_id, gate=record)
            session.execute(update(TrainingRun).where(TrainingRun.id == run_id).values(gate=record))
        self.progress.phase(TrainingPhase.PROMOTING)
        _phase(self.hooks, "promoting", run_id)
        try:
            reply = versions.promote_after_gate(
                adapter_id,
                f"training run {run_id}: {gate.decision.reason}",
                self.config.promote_timeout_s,
                inside_task=self.inside_task,
            )
        except Conflict as exc:
            # The registry's policy refused it (its files changed since the gate): the version
            # is failed, as the hot-swap would have failed it.
            with session_scope() as session:
                mark_failed(session, adapter_id, exc.message)
            error = f"the promotion was refused: {exc.message}"
            _finish(run_id, TrainingRunStatus.FAILED, error=error)
            return Outcome(run_id, TrainingRunStatus.FAILED, error)
        self.clock.mark("promote_s")
        with session_scope() as session:
            _merge_metrics(session, adapter_id, timings=self.clock.marks)
        if reply.promoted:
            _finish(run_id, TrainingRunStatus.PROMOTED)
            return Outcome(run_id, TrainingRunStatus.PROMOTED, reply.detail)
        error = f"the student refused the promotion: {reply.detail}"
        _finish(run_id, TrainingRunStatus.FAILED, error=error)
        return Outcome(run_id, TrainingRunStatus.FAILED, error)


def _phase(hooks: Hooks, phase: str, run_id: int) -> None:
    if hooks.on_phase is not None:
        hooks.on_phase(phase, run_id)


def _train(config, pairs, staging, base_model, parent_path, on_step):
    from services.trainer.loop import train_lora

    return train_lora(
        config, pairs, staging, base_model=base_model, init_adapter=parent_path, on_step=on_step
    )


def _training_metrics(result) -> TrainingMetrics:
    return TrainingMetrics(
        examples=result.examples,
        skipped_too_long=result.skipped_too_long,
        steps=result.steps,
        tokens=result.tokens,
        target_tokens=result.target_tokens,
        seconds=round(result.seconds, 3),
        tokens_per_s=round(result.tokens_per_s, 1),
        final_loss=result.loss_curve[-1].loss if result.loss_curve else None,
        device=result.device,
        dtype=result.dtype,
        lora=result.lora,
    )


def _merge_metrics(session, adapter_id: int, **parts: Any) -> None:
    """Set some parts of a version's metrics (``gate``, ``timings``), keeping the others."""
    from shared.models import Adapter

    adapter = session.get(Adapter, adapter_id)
    # A new object, not a change in place: the ORM sees an assignment.
    adapter.metrics = adapter.metrics.model_copy(update=parts)

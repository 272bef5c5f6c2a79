"""``persd experiment``, end to end:

    check config, pools and the served student (nothing is created if one fails)
      ─► experiment row (new; the same name and config: resume; more arms, counts or seeds:
         extend, keeping every finished point)
      ─► traffic: the distillation pool through the pipeline once (skipped when stored)
      ─► every arm point (arm, count, seed) not yet finished: select its examples, train an
         ``experiment`` adapter version, score it on the held-out pool, store the result
      ─► JSON and HTML reports (written to a temporary file, then renamed)

Ctrl-C marks the point in progress and the experiment ``interrupted`` (a staged artifact is
removed; a version already registered is kept and reused), and the same command resumes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from services.experiment import arms, html, report, traffic
from services.experiment.config import GROWABLE, check, grown, rehearsal_pairs, trainer_config
from services.experiment.measure import Measurer, check_student
from services.experiment.pools import Pools, load_pools
from services.experiment.training import train_point
from services.student.routing import Target
from services.teacher.settings import get_teacher_settings
from shared.db import session_scope
from shared.enums import ExperimentArm, ExperimentStatus, TeacherBackend
from shared.errors import Conflict, PersdError
from shared.models import Adapter, Experiment, ExperimentRun
from shared.models.base import utcnow
from shared.schemas.experiments import ExperimentConfig, RunResult, Traffic
from shared.schemas.training import ExperimentPoint
from shared.student_settings import get_student_settings
from shared.vllm_client import VllmClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Options:
    out_dir: Path
    traffic_timeout_s: float = 3600.0
    progress: bool = True


def prepare(config: ExperimentConfig) -> Pools:
    """Every check that can refuse the experiment, before anything is stored."""
    check(config)
    pools = load_pools(config.pools)
    settings = get_student_settings()
    client = VllmClient(settings.urls, retry_for_s=min(settings.retry_for_s, 10.0))
    try:
        check_student(client, config.student_model)
    finally:
        client.close()
    return pools


def open_experiment(config: ExperimentConfig) -> tuple[int, ExperimentConfig]:
    """The experiment's row and the config it runs: created, found again with the same config
    (resume), or found and extended (see ``config.grown``)."""
    with session_scope() as session:
        row = session.scalar(select(Experiment).where(Experiment.name == config.name))
        if row is None:
            row = Experiment(name=config.name, config=config, traffic=Traffic())
            session.add(row)
            session.flush()
            return row.id, config
        if row.config != config:
            extended = grown(row.config, config)
            if extended is None:
                old, new = row.config.model_dump(), config.model_dump()
                changed = sorted(k for k in new if old.get(k) != new[k])
                raise Conflict(
                    f"experiment {config.name!r} exists with another configuration (differs in:"
                    f" {', '.join(changed)}); re-run it with the same settings to resume, add"
                    " arms, counts or seeds to extend it, or choose a new --name"
                )
            log.info(
                "experiment %r extended to %s",
                config.name,
                extended.model_dump(include=set(GROWABLE)),
            )
            row.config = config = extended
        row.status = ExperimentStatus.RUNNING
        row.error = None
        return row.id, config


def _set_experiment(experiment_id: int, **values) -> None:
    with session_scope() as session:
        row = session.get(Experiment, experiment_id)
        for key, value in values.items():
            setattr(row, key, value)


def ensure_traffic(experiment_id: int, config: ExperimentConfig, pools: Pools, opts: Options):
    with session_scope() as session:
        stored = session.get(Experiment, experiment_id).traffic
    if stored.done:
        return stored
    from tqdm import tqdm

    started = time.monotonic()
    task_ids = traffic.submit_pool(config.name, pools.distill, config.traffic_max_steps)
    with tqdm(total=len(task_ids), desc="traffic", unit="task", disable=not opts.progress) as bar:

        def progress(settled: int, tally) -> None:
            bar.n = settled
            bar.set_postfix_str(", ".join(f"{k.value} {v}" for k, v in sorted(tally.items())))
            bar.refresh()

        found = traffic.wait_settled(
            task_ids, timeout_s=opts.traffic_timeout_s, on_progress=progress
        )
    teacher = get_teacher_settings()
    traffic.build_reference_stand(teacher)
    answers = []
    if config.teacher_backend is TeacherBackend.OPENAI:
        from services.student.evaluation import executor_runner

        run_tests, close = executor_runner()
        try:
            answers = traffic.ask_stand_answers(teacher, pools.distill, task_ids, run_tests)
        finally:
            close()
    summary = traffic.summarise(pools.distill, task_ids, found, answers, time.monotonic() - started)
    _set_experiment(experiment_id, traffic=summary)
    return summary


def _run_row(experiment_id: int, arm: ExperimentArm, count: int, seed: int) -> ExperimentRun:
    with session_scope() as session:
        row = session.scalar(
            select(ExperimentRun).where(
                ExperimentRun.experiment_id == experiment_id,
                ExperimentRun.arm == arm,
                ExperimentRun.count == count,
                ExperimentRun.seed == seed,
            )
        )
        if row is None:
            row = ExperimentRun(
                experiment_id=experiment_id, arm=arm, count=count, seed=seed, result=RunResult()
            )
            session.add(row)
        elif row.status != ExperimentStatus.FINISHED:
            row.status, row.error = ExperimentStatus.RUNNING, None
        session.flush()
        session.expunge(row)
        return row


def _set_run(run_id: int, **values) -> None:
    with session_scope() as session:
        row = session.get(ExperimentRun, run_id)
        for key, value in values.items():
            setattr(row, key, value)


def _adapter_target(adapter_id: int | None) -> tuple[Target, dict] | None:
    """The point's version from an earlier session and its training figures, if it is whole."""
    if adapter_id is None:
        return None
    with session_scope() as session:
        row = session.get(Adapter, adapter_id)
        if row is None or not Path(row.artifact_path).is_dir():
            return None
        training = row.metrics.training
        return Target(row.name, row.id, row.artifact_path), (
            training.model_dump(mode="json") if training is not None else {}
        )


def run_point(
    config: ExperimentConfig,
    run: ExperimentRun,
    stored: Traffic,
    pools: Pools,
    measurer: Measurer,
    opts: Options,
) -> None:
    from tqdm import tqdm

    cpu0 = time.process_time()
    result = RunResult()
    target = measurer.base_target()
    if run.arm != ExperimentArm.BASE:
        chosen = arms.select_point(run.arm, run.count, run.seed, stored)
        if not chosen.pairs:
            raise PersdError(
                f"{run.arm.value}: no training examples in the traffic (refined tasks:"
                f" {len(stored.refined_task_ids)} of {len(stored.task_ids)})"
            )
        result.tasks_used = len(chosen.task_ids)
        result.examples_used = len(chosen.pairs)
        pairs = chosen.pairs + rehearsal_pairs(config, len(chosen.pairs))
        result.rehearsed = len(pairs) - len(chosen.pairs)
        result.capped = chosen.capped
        result.spend = chosen.spend
        earlier = _adapter_target(run.adapter_id)  # trained before an interruption: reuse it
        if earlier is not None:
            trained, result.training = earlier
            result.train_s = float(result.training.get("seconds", 0.0))
        else:
            tc = trainer_config(config, run.arm, run.seed)
            steps = tc.epochs * math.ceil(len(pairs) / tc.batch_size)
            label = f"train {run.arm.value}@{run.count} s{run.seed}"
            with tqdm(
                total=steps, desc=label, unit="step", leave=False, disable=not opts.progress
            ) as bar:
                done = train_point(
                    tc,
                    pairs,
                    run.id,
                    describe=ExperimentPoint(
                        experiment=config.name, arm=run.arm, count=run.count, seed=run.seed
                    ),
                    on_step=lambda info: (
                        bar.update(1),
                        bar.set_postfix(loss=f"{info.loss:.3f}"),
                    ),
                )
            _set_run(run.id, adapter_id=done.adapter_id)
            assert done.metrics.training is not None  # train_point always records it
            result.training = done.metrics.training.model_dump(mode="json")
            result.train_s = round(done.seconds, 3)
            trained = Target(done.name, done.adapter_id, done.path)
        target = trained
    score = measurer.score([t.eval_task for t in pools.heldout], target, progress=opts.progress)
    result.pass_at_1 = score.pass_at_1
    result.outcomes = score.outcomes
    result.eval_s = round(score.seconds, 3)
    result.cpu_s = round(time.process_time() - cpu0, 3)
    _set_run(run.id, result=result, status=ExperimentStatus.FINISHED, finished_at=utcnow())


def write_reports(experiment_id: int, out_dir: Path) -> tuple[Path, Path]:
    with session_scope() as session:
        built = report.build(session, experiment_id)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"experiment-{_slug(built.name)}"
    json_path, html_path = stem.with_suffix(".json"), stem.with_suffix(".html")
    _atomic_write(json_path, json.dumps(built.model_dump(mode="json"), indent=2) + "\n")
    _atomic_write(html_path, html.page(built))
    return json_path, html_path


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name)[:100]


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _sigterm_as_interrupt():
    """A stop by a process manager (SIGTERM) ends the run like Ctrl-C: marked, resumable.
    Returns the previous handler (None off the main thread, where none can be set)."""
    import signal
    import threading

    def interrupt(_signum, _frame):
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, interrupt)


def run(config: ExperimentConfig, opts: Options) -> tuple[int, Path, Path]:
    """Run (or resume) the experiment; returns (experiment id, JSON path, HTML path)."""
    from tqdm import tqdm

    previous_sigterm = _sigterm_as_interrupt()
    pools = prepare(config)
    experiment_id, config = open_experiment(config)
    started = time.monotonic()
    with session_scope() as session:
        wall_before = session.get(Experiment, experiment_id).wall_s
    current: int | None = None
    measurer: Measurer | None = None
    try:
        stored = ensure_traffic(experiment_id, config, pools, opts)
        measurer = Measurer(
            get_student_settings(), steps=config.steps, max_new_tokens=config.max_new_tokens
        )
        points = report.planned(config)
        with tqdm(
            total=len(points), desc=config.name, unit="point", disable=not opts.progress
        ) as bar:
            for arm, count, seed in points:
                row = _run_row(experiment_id, arm, count, seed)
                if row.status == ExperimentStatus.FINISHED:
                    bar.update(1)
                    continue
                current = row.id
                bar.set_postfix_str(f"{arm.value}@{count} seed {seed}")
                try:
                    run_point(config, row, stored, pools, measurer, opts)
                except PersdError as exc:
                    # One point's failure (e.g. an arm with no examples) does not end the others.
                    log.warning(
                        "point %s@%s seed %s failed: %s", arm.value, count, seed, exc.message
                    )
                    _set_run(row.id, status=ExperimentStatus.FAILED, error=exc.message)
                current = None
                bar.update(1)
        with session_scope() as session:
            failed = session.scalars(
                select(ExperimentRun.id).where(
                    ExperimentRun.experiment_id == experiment_id,
                    ExperimentRun.status != ExperimentStatus.FINISHED,
                )
            ).all()
        _set_experiment(
            experiment_id,
            status=ExperimentStatus.FAILED if failed else ExperimentStatus.FINISHED,
            error=f"{len(failed)} point(s) failed; re-run to retry them" if failed else None,
            finished_at=utcnow(),
        )
    except BaseException as exc:
        interrupted = isinstance(exc, KeyboardInterrupt)
        status = ExperimentStatus.INTERRUPTED if interrupted else ExperimentStatus.FAILED
        message = (
            "interrupted"
            if interrupted
            else (exc.message if isinstance(exc, PersdError) else f"{type(exc).__name__}: {exc}")
        )
        if current is not None:
            _set_run(current, status=status, error=message)
        _set_experiment(experiment_id, status=status, error=message)
        raise
    finally:
        if measurer is not None:
            measurer.close()
        _set_experiment(experiment_id, wall_s=round(wall_before + time.monotonic() - started, 3))
        json_path, html_path = write_reports(experiment_id, opts.out_dir)
        if previous_sigterm is not None:
            import signal

            signal.signal(signal.SIGTERM, previous_sigterm)
    return experiment_id, json_path, html_path

"""The experiment's report, built from its stored rows: one home for the CLI's JSON file, the
HTML report, ``GET /v1/experiments/{id}`` and the dashboard's Experiments page."""

from __future__ import annotations

from collections.abc import Mapping, Set
from datetime import datetime

import numpy as np
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.experiment import stats
from services.experiment.pools import heldout_subsets
from shared.enums import ExperimentArm, ExperimentStatus
from shared.errors import NotFound
from shared.models import Experiment, ExperimentRun
from shared.schemas.experiments import TRAINED_ARMS, ExperimentConfig, TeacherSpend

PERSD_ARMS = (ExperimentArm.PERSD, ExperimentArm.PERSD_REFINE, ExperimentArm.PERSD_COMBINED)


class StepFigure(BaseModel):
    step: int
    mean: float
    low: float
    high: float


class PointRow(BaseModel):
    """One arm at one example count, over its finished seeds."""

    arm: ExperimentArm
    count: int
    seeds: list[int]
    tasks_used: float = Field(description="mean over seeds; below count when capped")
    examples_used: float
    capped: bool
    pass_at_1: list[StepFigure]
    spend: TeacherSpend = Field(description="teacher spend of one seed's training set")
    gain_points: float | None = Field(None, description="step-1 pass@1 points over base")
    usd_per_point: float | None = None
    tokens_per_point: float | None = Field(None, description="billed-size tokens per point")
    train_s: float
    eval_s: float


class ComparisonRow(BaseModel):
    label: str
    a: str
    b: str
    step: int
    diff: float
    low: float
    high: float
    p_bootstrap: float
    p_mcnemar: float
    wins: int
    losses: int


class RunRow(BaseModel):
    id: int
    arm: ExperimentArm
    count: int
    seed: int
    status: ExperimentStatus
    adapter_id: int | None
    tasks_used: int
    pass_at_1: list[float]
    train_s: float
    eval_s: float
    cpu_s: float
    error: str | None


class TrafficRow(BaseModel):
    tasks: int
    statuses: dict[str, int]
    refined: int
    attempt_models: list[str]
    wall_s: float
    done: bool


class ExperimentSummary(BaseModel):
    id: int
    name: str
    status: ExperimentStatus
    created_at: datetime
    finished_at: datetime | None
    wall_s: float
    arms: list[ExperimentArm]
    runs_finished: int
    runs_planned: int


class ExperimentReport(BaseModel):
    id: int
    name: str
    status: ExperimentStatus
    created_at: datetime
    finished_at: datetime | None
    wall_s: float
    cpu_s: float = Field(description="CPU seconds of the experiment process in its arm points")
    error: str | None
    config: ExperimentConfig
    traffic: TrafficRow
    heldout_tasks: int
    runs_planned: int
    points: list[PointRow]
    comparisons: list[ComparisonRow]
    runs: list[RunRow]


def planned(config: ExperimentConfig) -> list[tuple[ExperimentArm, int, int]]:
    """(arm, count, seed) of every point: base once (greedy decoding has no seed), then each
    trained arm at every count and seed, seed by seed, so that an experiment stopped early
    already has every arm at the first seeds."""
    points: list[tuple[ExperimentArm, int, int]] = []
    if ExperimentArm.BASE in config.arms:
        points.append((ExperimentArm.BASE, 0, config.seeds[0]))
    trained = [a for a in config.arms if a in TRAINED_ARMS]
    for seed in config.seeds:
        points += [(arm, c, seed) for c in sorted(config.counts) for arm in trained]
    return points


def _matrix(runs: list[ExperimentRun], step: int, only: Set[str] | None = None) -> np.ndarray:
    order = [o.task_id for o in runs[0].result.outcomes if only is None or o.task_id in only]
    rows = []
    for run in runs:
        by_task = {o.task_id: o.passed[step] for o in run.result.outcomes}
        rows.append([by_task[t] for t in order])
    return np.asarray(rows, dtype=float)


def _point(arm, count, runs: list[ExperimentRun], steps: int) -> PointRow:
    figures = []
    for step in range(steps):
        ci = stats.interval(_matrix(runs, step))
        figures.append(StepFigure(step=step + 1, mean=ci.mean, low=ci.low, high=ci.high))
    spend = TeacherSpend()
    for run in runs:
        spend = spend.plus(run.result.spend)
    n = len(runs)
    mean_spend = TeacherSpend(
        **{k: (v / n if isinstance(v, float) else round(v / n)) for k, v in spend}
    )
    return PointRow(
        arm=arm,
        count=count,
        seeds=sorted(r.seed for r in runs),
        tasks_used=sum(r.result.tasks_used for r in runs) / n,
        examples_used=sum(r.result.examples_used for r in runs) / n,
        capped=any(r.result.capped for r in runs),
        pass_at_1=figures,
        spend=mean_spend,
        train_s=round(sum(r.result.train_s for r in runs) / n, 3),
        eval_s=round(sum(r.result.eval_s for r in runs) / n, 3),
    )


def _label(arm: ExperimentArm, count: int) -> str:
    return arm.value if arm == ExperimentArm.BASE else f"{arm.value}@{count}"


def comparisons(
    groups: dict[tuple[ExperimentArm, int], list[ExperimentRun]],
    counts: list[int],
    steps: int,
    subsets: Mapping[str, Set[str]] | None = None,
) -> list[ComparisonRow]:
    """PERsD arms vs base, vs StanD at equal counts, and vs StanD at about three times their
    count (the paper's "a third of the data"); the "vs base" rows again on each held-out
    subset (``vs base, tasks with a lesson``)."""
    Pair = tuple[str, tuple[ExperimentArm, int], tuple[ExperimentArm, int], Set[str] | None]
    pairs: list[Pair] = []
    base = (ExperimentArm.BASE, 0)
    for arm in (*PERSD_ARMS, ExperimentArm.STAND):
        for count in sorted(counts):
            if (arm, count) in groups and base in groups:
                pairs.append(("vs base", (arm, count), base, None))
                for name, ids in (subsets or {}).items():
                    pairs.append((f"vs base, {name}", (arm, count), base, ids))
    for arm in PERSD_ARMS:
        for count in sorted(counts):
            stand = (ExperimentArm.STAND, count)
            if (arm, count) in groups and stand in groups:
                pairs.append(("vs StanD, equal tasks", (arm, count), stand, None))
            for big in counts:
                stand_big = (ExperimentArm.STAND, big)
                if 2.5 <= big / count <= 3.5 and (arm, count) in groups and stand_big in groups:
                    pairs.append(("vs StanD at ~3x the tasks", (arm, count), stand_big, None))
    rows = []
    for label, a, b, only in pairs:
        if only is not None and not any(o.task_id in only for o in groups[a][0].result.outcomes):
            continue  # none of the measured tasks is in the subset (another pool's ids)
        for step in range(steps):
            result = stats.paired(_matrix(groups[a], step, only), _matrix(groups[b], step, only))
            rows.append(
                ComparisonRow(
                    label=label,
                    a=_label(*a),
                    b=_label(*b),
                    step=step + 1,
                    diff=result.diff,
                    low=result.low,
                    high=result.high,
                    p_bootstrap=result.p_bootstrap,
                    p_mcnemar=result.p_mcnemar,
                    wins=result.wins,
                    losses=result.losses,
                )
            )
    return rows


def _get(session: Session, ref: int | str) -> Experiment:
    if isinstance(ref, int) or str(ref).isdigit():
        row = session.get(Experiment, int(ref))
    else:
        row = session.scalar(select(Experiment).where(Experiment.name == ref))
    if row is None:
        raise NotFound(f"experiment {ref!r} does not exist")
    return row


def _runs(session: Session, experiment_id: int) -> list[ExperimentRun]:
    return list(
        session.scalars(
            select(ExperimentRun)
            .where(ExperimentRun.experiment_id == experiment_id)
            .order_by(ExperimentRun.id)
        )
    )


def summary(session: Session, row: Experiment) -> ExperimentSummary:
    runs = _runs(session, row.id)
    return ExperimentSummary(
        id=row.id,
        name=row.name,
        status=row.status,
        created_at=row.created_at,
        finished_at=row.finished_at,
        wall_s=row.wall_s,
        arms=row.config.arms,
        runs_finished=sum(r.status == ExperimentStatus.FINISHED for r in runs),
        runs_planned=len(planned(row.config)),
    )


def list_experiments(session: Session) -> list[ExperimentSummary]:
    rows = session.scalars(select(Experiment).order_by(Experiment.id.desc()))
    return [summary(session, row) for row in rows]


def build(session: Session, ref: int | str) -> ExperimentReport:
    row = _get(session, ref)
    config = row.config
    runs = _runs(session, row.id)
    done = [r for r in runs if r.status == ExperimentStatus.FINISHED and r.result.outcomes]
    groups: dict[tuple[ExperimentArm, int], list[ExperimentRun]] = {}
    for run in done:
        groups.setdefault((run.arm, run.count), []).append(run)
    points = [
        _point(arm, count, g, config.steps)
        for (arm, count), g in sorted(
            groups.items(), key=lambda kv: (list(ExperimentArm).index(kv[0][0]), kv[0][1])
        )
    ]
    base = next((p for p in points if p.arm == ExperimentArm.BASE), None)
    for point in points:
        if base is None or point.arm == ExperimentArm.BASE:
            continue
        gain = 100 * (point.pass_at_1[0].mean - base.pass_at_1[0].mean)
        point.gain_points = round(gain, 3)
        if gain > 0:
            point.usd_per_point = point.spend.cost_usd / gain
            point.tokens_per_point = point.spend.tokens_equivalent / gain
    traffic = row.traffic
    return ExperimentReport(
        id=row.id,
        name=row.name,
        status=row.status,
        created_at=row.created_at,
        finished_at=row.finished_at,
        wall_s=row.wall_s,
        cpu_s=round(sum(r.result.cpu_s for r in runs), 3),
        error=row.error,
        config=config,
        traffic=TrafficRow(
            tasks=len(traffic.task_ids),
            statuses=traffic.statuses,
            refined=len(traffic.refined_task_ids),
            attempt_models=traffic.attempt_models,
            wall_s=traffic.wall_s,
            done=traffic.done,
        ),
        heldout_tasks=len(done[0].result.outcomes) if done else 0,
        runs_planned=len(planned(config)),
        points=points,
        comparisons=comparisons(groups, config.counts, config.steps, heldout_subsets(config.pools)),
        runs=[
            RunRow(
                id=r.id,
                arm=r.arm,
                count=r.count,
                seed=r.seed,
                status=r.status,
                adapter_id=r.adapter_id,
                tasks_used=r.result.tasks_used,
                pass_at_1=r.result.pass_at_1,
                train_s=r.result.train_s,
                eval_s=r.result.eval_s,
                cpu_s=r.result.cpu_s,
                error=r.error,
            )
            for r in runs
        ],
    )

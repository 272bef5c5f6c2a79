"""The promotion gate: a candidate against the active adapter on held-out data.

Figures per side:

- **pass@1** on held-out tasks: one greedy completion per task from the student's vLLM server
  under that side's served name (the candidate is loaded under its own name for this), the
  student's prompt and clean-up, run by the executor against the task's hidden tests (its seen
  tests when it has none). Greedy, so the comparison is not noise between two samples. Both
  sides answer the same tasks, so the outcomes are *paired*.
- **NLL**: the mean negative log-likelihood per target token of held-out refinements, computed
  locally with transformers + peft.
- **retention**: pass@1 on the retention sets the caller passes (lessons, abilities, probes;
  services/retention/), generated and scored exactly like the held-out tasks.

The rule (``decide``), on those figures alone:

1. *Non-inferiority*: held-out pass@1 more than ``gate_pass_tolerance`` below the active side's
   refuses.
2. *Retention guard*: on lessons or abilities, pass@1 more than ``gate_retention_tolerance``
   below the active side's refuses, naming the lost tasks. Probes are reported, not gated: they
   are held-out evidence, which step 3 already weighs.
3. *Evidence of a gain*: with at least ``gate_min_heldout_tasks`` held-out tasks, McNemar's
   exact test on the discordant tasks (shared/stats.py) decides: promote only when the candidate
   wins more tasks than it loses and p < ``gate_alpha``. NLL and ``gate_primary_metric`` do not
   count there: a significant pass@1 gain is the evidence. Below the minimum the reason says
   "not enough held-out tasks (n=2 < 30)" and ``gate_small_sample_policy`` decides: ``hold``
   refuses; ``promote_on_nll`` lets the rule from before the test decide, on
   ``gate_primary_metric`` (NLL must improve by more than ``gate_min_nll_improvement``, or raw
   pass@1 must rise).

With no active adapter the base model is the side to beat. Every figure, the test and the
decision are stored with the run (shared.schemas.training.GateRecord).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from services.trainer.config import TrainerConfig
from services.trainer.encoding import Pair
from services.trainer.selection import HeldoutTask
from shared.enums import RetentionKind
from shared.schemas.retention import SetFigures
from shared.schemas.training import GateFigures, GateRecord, HeldoutTest, RetentionCheck
from shared.stats import mcnemar

log = logging.getLogger(__name__)

# Float noise in two pass rates computed from the same task count must not flip a decision.
EPS = 1e-9
# The sets whose losses refuse a candidate; probes are the held-out evidence, weighed by the test.
GATED_KINDS = frozenset({RetentionKind.LESSONS, RetentionKind.ABILITIES})
# Lost task ids named in a reason (the record keeps them all): a reason stays readable.
REASON_IDS = 20


@dataclass(frozen=True)
class Program:
    """One generated answer to run: complete code and the suite that scores it."""

    task_id: int
    code: str
    entry_point: str
    tests: dict[str, Any]


@dataclass(frozen=True)
class Contender:
    """An adapter version on one side of the gate: its id, its served name, its files."""

    adapter_id: int
    name: str
    path: str


# Runs programs and says, in order, whether each passed all its tests.
RunPrograms = Callable[[Sequence[Program]], list[bool]]
# (side, programs with a verdict, programs): the gate's own phase in the run's live progress.
GateProgress = Callable[[str, int, int], None]


# One side's figures, filled in as the gate runs; stored as they are in the gate record.
Figures = GateFigures


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


@dataclass(frozen=True)
class TaskOutcome:
    """One side's answer to one task and its verdict."""

    task_id: int
    passed: bool
    code: str


@dataclass(frozen=True)
class RetentionTasks:
    """A retention set to measure both sides on (services/retention/ picks the tasks)."""

    kind: RetentionKind
    tasks: Sequence[HeldoutTask]


@dataclass(frozen=True)
class SetOutcome:
    """Both sides' per-task outcomes on one retention set, in the set's task order (what the
    caller stores as RetentionResult rows)."""

    kind: RetentionKind
    candidate: list[TaskOutcome]
    active: list[TaskOutcome]

    def check(self) -> RetentionCheck:
        passed_before = {o.task_id for o in self.active if o.passed}
        return RetentionCheck(
            kind=self.kind,
            candidate=set_figures(self.kind, self.candidate),
            active=set_figures(self.kind, self.active),
            lost_task_ids=sorted(
                o.task_id for o in self.candidate if not o.passed and o.task_id in passed_before
            ),
            gated=self.kind in GATED_KINDS,
        )


def set_figures(kind: RetentionKind, outcomes: Sequence[TaskOutcome]) -> SetFigures:
    passed = sum(o.passed for o in outcomes)
    return SetFigures(
        kind=kind,
        tasks=len(outcomes),
        passed=passed,
        pass_at_1=passed / len(outcomes) if outcomes else None,
    )


def heldout_test(
    config: TrainerConfig, candidate: Sequence[bool], active: Sequence[bool]
) -> HeldoutTest:
    """McNemar's exact test on the held-out outcomes, paired by task, and the rule it selects."""
    test = mcnemar(candidate, active)
    enough = test.n >= config.gate_min_heldout_tasks
    return HeldoutTest(
        n=test.n,
        wins=test.wins,
        losses=test.losses,
        p_value=test.p_value,
        significant=enough and test.wins > test.losses and test.p_value < config.gate_alpha,
        min_tasks=config.gate_min_heldout_tasks,
        alpha=config.gate_alpha,
        policy=config.gate_small_sample_policy,
        applied="mcnemar" if enough else config.gate_small_sample_policy,
    )


def decide(
    config: TrainerConfig,
    candidate: Figures,
    active: Figures,
    test: HeldoutTest,
    retention: Sequence[RetentionCheck] = (),
) -> Decision:
    """The gate's rule (the module's docstring), on figures alone."""
    parts: list[str] = []
    if test.applied != "mcnemar":
        parts.append(f"not enough held-out tasks (n={test.n} < {test.min_tasks})")
    refusals = [*_inferior(config, candidate, active), *_forgotten(config, retention)]
    if refusals:
        return Decision(False, "; ".join(parts + refusals))
    if test.n:
        parts.append(_test_note(candidate, active, test))
    if test.applied == "mcnemar":
        return Decision(test.significant, "; ".join(parts))
    if test.applied == "hold":
        parts.append("small-sample policy hold: not promoted")
        return Decision(False, "; ".join(parts))
    fallback = _primary_metric_rule(config, candidate, active)
    parts.append(f"small-sample policy promote_on_nll: {fallback.reason}")
    return Decision(fallback.promote, "; ".join(parts))


def _inferior(config: TrainerConfig, candidate: Figures, active: Figures) -> list[str]:
    tol = config.gate_pass_tolerance
    if candidate.pass_at_1 is None or active.pass_at_1 is None:
        return []
    if candidate.pass_at_1 < active.pass_at_1 - tol - EPS:
        return [
            f"held-out pass@1 {candidate.pass_at_1:.3f} is below the active"
            f" {active.pass_at_1:.3f} by more than the tolerance {tol:g}"
        ]
    return []


def _forgotten(config: TrainerConfig, retention: Sequence[RetentionCheck]) -> list[str]:
    tol = config.gate_retention_tolerance
    out = []
    for check in retention:
        cand, act = check.candidate.pass_at_1, check.active.pass_at_1
        if not check.gated or cand is None or act is None or cand >= act - tol - EPS:
            continue
        lost = check.lost_task_ids
        ids = ", ".join(str(i) for i in lost[:REASON_IDS])
        more = f" and {len(lost) - REASON_IDS} more" if len(lost) > REASON_IDS else ""
        out.append(
            f"forgot {len(lost)} of {check.active.tasks} {check.kind.value}: pass@1 {cand:.3f}"
            f" vs {act:.3f} (tolerance {tol:g}); lost tasks {ids}{more}"
        )
    return out


def _test_note(candidate: Figures, active: Figures, test: HeldoutTest) -> str:
    p = f"McNemar p={test.p_value:.3g}"
    if test.wins <= test.losses:
        verdict = f"{p}: no gain"
    elif test.p_value >= test.alpha:
        verdict = f"{p} >= {test.alpha:g}: not significant"
    elif test.significant:
        verdict = f"{p} < {test.alpha:g}: significant"
    else:  # below the minimum: the test may pass, the rule does not count it
        verdict = f"{p} < {test.alpha:g}, on too few tasks to count"
    return (
        f"held-out pass@1 {candidate.pass_at_1:.3f} vs {active.pass_at_1:.3f},"
        f" {_count(test.wins, 'win')} / {_count(test.losses, 'loss')}, {verdict}"
    )


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}{'es' if word.endswith('s') else 's'}"


def _primary_metric_rule(config: TrainerConfig, candidate: Figures, active: Figures) -> Decision:
    """Below the minimum under promote_on_nll: the rule from before the held-out test."""
    if config.gate_primary_metric == "nll":
        if candidate.nll is None or active.nll is None:
            return Decision(False, "no held-out refinements to compare NLL on")
        margin = config.gate_min_nll_improvement
        if candidate.nll < active.nll - margin - EPS:
            return Decision(
                True,
                f"held-out NLL {candidate.nll:.4f} < {active.nll:.4f}"
                f"{f' - {margin:g}' if margin else ''}",
            )
        return Decision(
            False,
            f"held-out NLL {candidate.nll:.4f} is not better than the active {active.nll:.4f}"
            f"{f' by more than {margin:g}' if margin else ''}",
        )
    if candidate.pass_at_1 is None or active.pass_at_1 is None:
        return Decision(False, "no held-out tasks to compare pass@1 on")
    if candidate.pass_at_1 > active.pass_at_1 + EPS:
        return Decision(
            True, f"held-out pass@1 {candidate.pass_at_1:.3f} > {active.pass_at_1:.3f} (no test)"
        )
    return Decision(
        False,
        f"held-out pass@1 {candidate.pass_at_1:.3f} is not better than the active"
        f" {active.pass_at_1:.3f}",
    )


def generate_programs(
    client: Any, model: str, tasks: Sequence[HeldoutTask], config: TrainerConfig
) -> list[Program]:
    """One greedy completion per task from ``model`` on the student's server, cleaned up the way
    the student cleans its own answers."""
    from shared.prompts import STOP, extract_code, generation_prompt

    sampling = {"temperature": 0.0, "max_tokens": config.gate_max_new_tokens, "stop": STOP}

    def one(task: HeldoutTask) -> Program:
        reply = client.complete(model, generation_prompt(task.description, task.header), sampling)
        code = extract_code(reply.text, task.header, task.entry_point)
        return Program(task.task_id, code, task.entry_point, task.tests)

    # vLLM batches concurrent requests; one at a time would waste the engine.
    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(one, tasks))


def score(programs: Sequence[Program], run_programs: RunPrograms) -> list[TaskOutcome]:
    results = run_programs(programs) if programs else []
    return [
        TaskOutcome(p.task_id, bool(ok), p.code) for p, ok in zip(programs, results, strict=True)
    ]


def fill_pass(figures: Figures, outcomes: Sequence[TaskOutcome]) -> None:
    figures.tasks = len(outcomes)
    figures.passed = sum(o.passed for o in outcomes)
    figures.pass_at_1 = figures.passed / figures.tasks if figures.tasks else None
    figures.failed_task_ids = [o.task_id for o in outcomes if not o.passed]


@dataclass(frozen=True)
class GateResult:
    decision: Decision
    candidate: Figures
    active: Figures
    heldout: HeldoutTest | None = None
    # Per set, both sides' per-task outcomes, for the caller to store (RetentionResult rows).
    retention: list[SetOutcome] = field(default_factory=list)

    def record(self, config: TrainerConfig) -> GateRecord:
        """What is stored in ``training_runs.gate`` (and copied into the version's metrics)."""
        return GateRecord(
            promote=self.decision.promote,
            reason=self.decision.reason,
            primary_metric=config.gate_primary_metric,
            pass_tolerance=config.gate_pass_tolerance,
            min_nll_improvement=config.gate_min_nll_improvement,
            candidate=self.candidate,
            active=self.active,
            heldout_test=self.heldout,
            retention_tolerance=config.gate_retention_tolerance,
            retention=[s.check() for s in self.retention],
        )


def distinct_tasks(*groups: Sequence[HeldoutTask]) -> list[HeldoutTask]:
    """Every task once, first appearance first. A probe is usually a held-out task too: one
    greedy answer per side serves both (the same prompt gives the same answer)."""
    seen: dict[int, HeldoutTask] = {}
    for group in groups:
        for task in group:
            known = seen.setdefault(task.task_id, task)
            if known != task:
                raise ValueError(f"task {task.task_id} was given twice with different contents")
    return list(seen.values())


def evaluate(
    config: TrainerConfig,
    *,
    base_model: str,
    candidate: Contender,
    active: Contender | None,
    served_base_name: str,
    tasks: Sequence[HeldoutTask],
    examples: Sequence[Pair],
    client: Any,
    run_programs: RunPrograms,
    on_side: Callable[[str, int], None] | None = None,
    retention: Sequence[RetentionTasks] = (),
) -> GateResult:
    """Compare ``candidate`` with ``active`` (or the base model when None) on the held-out
    tasks and examples, and on each retention set.

    The candidate must already be loaded into the server under its name; the caller loads and
    unloads it."""
    from services.trainer.nll import mean_nll

    cand = Figures(side="candidate", model=candidate.name, adapter_id=candidate.adapter_id)
    act = (
        Figures(side="active", model=active.name, adapter_id=active.adapter_id)
        if active is not None
        else Figures(side="active", model=served_base_name, adapter_id=None)
    )
    todo = distinct_tasks(tasks, *(s.tasks for s in retention))
    answered: dict[str, dict[int, TaskOutcome]] = {}
    for side in (cand, act):
        answered[side.side] = {}
        if todo:
            if on_side is not None:
                on_side(side.side, len(todo))  # told before generating: that takes a while
            programs = generate_programs(client, side.model, todo, config)
            answered[side.side] = {o.task_id: o for o in score(programs, run_programs)}
        fill_pass(side, [answered[side.side][t.task_id] for t in tasks])
    scores = mean_nll(
        config,
        base_model,
        {"candidate": candidate.path, "active": active.path if active is not None else None},
        examples,
    )
    for side, key in ((cand, "candidate"), (act, "active")):
        s = scores[key]
        side.nll, side.nll_tokens, side.nll_examples = s.nll, s.tokens, s.examples
    test = heldout_test(
        config,
        [answered["candidate"][t.task_id].passed for t in tasks],
        [answered["active"][t.task_id].passed for t in tasks],
    )
    sets = [
        SetOutcome(
            s.kind,
            [answered["candidate"][t.task_id] for t in s.tasks],
            [answered["active"][t.task_id] for t in s.tasks],
        )
        for s in retention
    ]
    decision = decide(config, cand, act, test, [s.check() for s in sets])
    log.info("gate: %s (%s)", "promote" if decision.promote else "reject", decision.reason)
    return GateResult(decision, cand, act, test, sets)

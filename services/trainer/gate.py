"""The promotion gate: a candidate against the active adapter on held-out data.

Two figures per side:

- **pass@1** on held-out tasks: one greedy completion per task from the student's vLLM server
  under that side's served name (the candidate is loaded under its own name for this), the
  student's prompt and clean-up, run by the executor against the task's hidden tests (its seen
  tests when it has none). Greedy, so the comparison is not noise between two samples.
- **NLL**: the mean negative log-likelihood per target token of held-out refinements, computed
  locally with transformers + peft.

The candidate is promoted only when its pass@1 is not below the active side's by more than the
tolerance, and it is better on the primary metric. With no active adapter the base model is the
side to beat. Both figure sets and the decision are stored with the run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from services.trainer.config import TrainerConfig
from services.trainer.encoding import Pair
from services.trainer.selection import HeldoutTask
from shared.schemas.training import GateFigures, GateRecord

log = logging.getLogger(__name__)

# Float noise in two pass rates computed from the same task count must not flip a decision.
EPS = 1e-9


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


def decide(config: TrainerConfig, candidate: Figures, active: Figures) -> Decision:
    """The gate's rule, on figures alone."""
    tol = config.gate_pass_tolerance
    if candidate.pass_at_1 is not None and active.pass_at_1 is not None:
        floor = active.pass_at_1 - tol
        if candidate.pass_at_1 < floor - EPS:
            return Decision(
                False,
                f"held-out pass@1 {candidate.pass_at_1:.3f} is below the active"
                f" {active.pass_at_1:.3f} by more than the tolerance {tol:g}",
            )
    pass_note = (
        f"pass@1 {candidate.pass_at_1:.3f} vs {active.pass_at_1:.3f}"
        if candidate.pass_at_1 is not None and active.pass_at_1 is not None
        else "no held-out tasks for pass@1"
    )
    if config.gate_primary_metric == "nll":
        if candidate.nll is None or active.nll is None:
            return Decision(False, "no held-out refinements to compare NLL on (primary metric)")
        margin = config.gate_min_nll_improvement
        if candidate.nll < active.nll - margin - EPS:
            return Decision(
                True,
                f"held-out NLL {candidate.nll:.4f} < {active.nll:.4f}"
                f"{f' - {margin:g}' if margin else ''}; {pass_note}",
            )
        return Decision(
            False,
            f"held-out NLL {candidate.nll:.4f} is not better than the active {active.nll:.4f}"
            f"{f' by more than {margin:g}' if margin else ''}; {pass_note}",
        )
    if candidate.pass_at_1 is None or active.pass_at_1 is None:
        return Decision(False, "no held-out tasks to compare pass@1 on (primary metric)")
    if candidate.pass_at_1 > active.pass_at_1 + EPS:
        return Decision(True, f"held-out pass@1 {candidate.pass_at_1:.3f} > {active.pass_at_1:.3f}")
    return Decision(
        False,
        f"held-out pass@1 {candidate.pass_at_1:.3f} is not better than the active"
        f" {active.pass_at_1:.3f} (primary metric)",
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


def score_pass(figures: Figures, programs: Sequence[Program], run_programs: RunPrograms) -> None:
    results = run_programs(programs) if programs else []
    figures.tasks = len(programs)
    figures.passed = sum(results)
    figures.pass_at_1 = figures.passed / figures.tasks if figures.tasks else None
    figures.failed_task_ids = [p.task_id for p, ok in zip(programs, results, strict=True) if not ok]


@dataclass(frozen=True)
class GateResult:
    decision: Decision
    candidate: Figures
    active: Figures

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
        )


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
) -> GateResult:
    """Compare ``candidate`` with ``active`` (or the base model when None).

    The candidate must already be loaded into the server under its name; the caller loads and
    unloads it."""
    from services.trainer.nll import mean_nll

    cand = Figures(side="candidate", model=candidate.name, adapter_id=candidate.adapter_id)
    act = (
        Figures(side="active", model=active.name, adapter_id=active.adapter_id)
        if active is not None
        else Figures(side="active", model=served_base_name, adapter_id=None)
    )
    for side in (cand, act):
        if tasks:
            if on_side is not None:
                on_side(side.side, len(tasks))  # told before generating: that takes a while
            score_pass(side, generate_programs(client, side.model, tasks, config), run_programs)
    scores = mean_nll(
        config,
        base_model,
        {"candidate": candidate.path, "active": active.path if active is not None else None},
        examples,
    )
    for side, key in ((cand, "candidate"), (act, "active")):
        s = scores[key]
        side.nll, side.nll_tokens, side.nll_examples = s.nll, s.tokens, s.examples
    decision = decide(config, cand, act)
    log.info("gate: %s (%s)", "promote" if decision.promote else "reject", decision.reason)
    return GateResult(decision, cand, act)

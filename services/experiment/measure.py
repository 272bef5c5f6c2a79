"""Scoring a model on the held-out pool with ``persd eval``'s own evaluation
(``services.student.evaluation.evaluate``): greedy decoding, steps 1..n of multi-step inference
(repairs on the seen tests), every step's answer scored on the hidden tests, through the real
vLLM server and the executor's sandbox."""

from __future__ import annotations

from dataclasses import dataclass

from services.student.attempts import sampling_params
from services.student.datasets import EvalTask
from services.student.evaluation import evaluate, executor_runner
from services.student.hotswap import ensure_loaded
from services.student.routing import Router, Target
from shared.errors import InvalidInput
from shared.schemas.experiments import TaskOutcome
from shared.student_settings import StudentSettings
from shared.vllm_client import VllmClient


@dataclass(frozen=True)
class Score:
    pass_at_1: list[float]  # per step
    outcomes: list[TaskOutcome]
    seconds: float


def served_base(client: VllmClient) -> tuple[str, str]:
    """(served name, model path) of the base model on the first replica."""
    for model in client.models(client.urls[0]):
        if not model.get("parent"):
            return model["id"], str(model.get("root") or model["id"])
    raise InvalidInput(f"vLLM at {client.urls[0]} serves no base model")


def check_student(client: VllmClient, student_model: str) -> str:
    """The served base model's name, if it is ``student_model``; else InvalidInput naming both."""
    for url in client.urls:
        name, root = served_base(VllmClient([url], retry_for_s=client.retry_for_s))
        if student_model not in (name, root):
            raise InvalidInput(
                f"student model {student_model!r} is not what the stack serves: vLLM at {url}"
                f" serves {name!r}; run the experiment with STUDENT_MODEL={root} or start the"
                " student server on the model you mean"
            )
    return served_base(client)[0]


class Measurer:
    def __init__(self, settings: StudentSettings, *, steps: int, max_new_tokens: int) -> None:
        self.client = VllmClient(
            settings.urls,
            timeout_s=settings.request_timeout_s,
            retry_for_s=settings.retry_for_s,
            max_connections=max(settings.concurrency, 8),
        )
        self.router = Router(self.client, settings.served_model_name)
        self.steps = steps
        self.concurrency = settings.concurrency
        # Greedy: pass@1 of one sample is then the model's answer, not a draw.
        self.sampling = sampling_params(settings) | {
            "temperature": 0.0,
            "max_tokens": max_new_tokens,
        }
        self.run_tests, self._close = executor_runner()

    def close(self) -> None:
        self._close()
        self.client.close()

    def score(self, tasks: list[EvalTask], target: Target, progress: bool = True) -> Score:
        loaded = target.adapter_path is not None
        if loaded:
            ensure_loaded(self.client, target.model, target.adapter_path)
        try:
            report = evaluate(
                tasks,
                steps=self.steps,
                samples=1,
                router=self.router,
                target=target,
                sampling=self.sampling,
                run_tests=self.run_tests,
                concurrency=self.concurrency,
                progress=progress,
            )
        finally:
            if loaded:
                for url in self.client.urls:
                    self.client.unload_adapter(url, target.model)
        outcomes = [
            TaskOutcome(task_id=p["task_id"], passed=[bool(c) for c in p["correct_per_step"]])
            for p in report["per_task"]
        ]
        return Score(
            [round(row["pass@1"], 6) for row in report["per_step"]], outcomes, report["duration_s"]
        )

    def base_target(self) -> Target:
        return Target(model=self.router.base_model)

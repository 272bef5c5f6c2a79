"""A running training run's live progress: ``training_runs.progress``, written a few times a
second at most by the trainer, read by the API (dashboard, SSE) and the CLI's progress bar."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from shared.enums import TrainingPhase


def duration(seconds: float | None) -> str:
    """``1h02m``, ``4m05s``, ``12s``: short enough for a progress line."""
    if seconds is None:
        return "?"
    s = max(0, round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


class TrainingProgress(BaseModel):
    model_config = ConfigDict(extra="ignore")  # stored JSON: newer writers may add fields

    phase: TrainingPhase
    step: int = Field(0, ge=0)
    total_steps: int = Field(0, ge=0)
    epoch: int = Field(0, ge=0)
    epochs: int = Field(0, ge=0)
    loss: float | None = None
    tokens_per_s: float | None = None
    elapsed_s: float = Field(0.0, ge=0, description="since the run started")
    eta_s: float | None = Field(None, description="training time left (the gate comes after)")
    # The gate's own phase: which side's held-out programs, and how many have a verdict.
    gate_side: str = ""
    gate_done: int = Field(0, ge=0)
    gate_total: int = Field(0, ge=0)
    updated_at: datetime

    @property
    def fraction(self) -> float:
        if self.phase is TrainingPhase.EVALUATING and self.gate_total:
            return self.gate_done / self.gate_total
        if self.phase is TrainingPhase.TRAINING and self.total_steps:
            return self.step / self.total_steps
        return 1.0 if self.phase is TrainingPhase.PROMOTING else 0.0

    def describe(self) -> str:
        """One line, the same in the terminal and on the dashboard."""
        if self.phase is TrainingPhase.TRAINING:
            parts = [
                f"training step {self.step}/{self.total_steps}",
                f"epoch {self.epoch}/{self.epochs}",
            ]
            if self.loss is not None:
                parts.append(f"loss {self.loss:.4f}")
            if self.tokens_per_s is not None:
                parts.append(f"{self.tokens_per_s:,.0f} tok/s")
            parts.append(f"elapsed {duration(self.elapsed_s)}")
            parts.append(f"ETA {duration(self.eta_s)}")
            return " · ".join(parts)
        if self.phase is TrainingPhase.EVALUATING:
            if self.gate_total:
                side = f" ({self.gate_side})" if self.gate_side else ""
                return (
                    f"evaluating {self.gate_done}/{self.gate_total} held-out tasks{side}"
                    f" · elapsed {duration(self.elapsed_s)}"
                )
            return f"evaluating on held-out data · elapsed {duration(self.elapsed_s)}"
        if self.phase is TrainingPhase.PROMOTING:
            return f"promoting (hot-swap into the student) · elapsed {duration(self.elapsed_s)}"
        return f"preparing (model, tokenizer, examples) · elapsed {duration(self.elapsed_s)}"

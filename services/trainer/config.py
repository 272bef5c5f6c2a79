"""The trainer's one documented configuration object (environment prefix ``TRAINER_``).

Every parameter of a training run lives here, grouped as TRL's ``sft_config.py`` groups its own:
when a run starts, its config is snapshotted into ``training_runs.config`` so a run can always be
explained and repeated. Values come from the environment (``TRAINER_LORA_RANK=16``), and callers
such as ``persd train --here --set lora_rank=16`` override them as keyword arguments.

Groups
------
Trigger
    ``min_new_examples`` (N), ``interval_minutes`` (T), ``check_interval_s``,
    ``failure_backoff_minutes``: the scheduler looks every ``check_interval_s``; a run starts when at
    least N new training examples arrived since the last finished run, or T minutes passed since
    it with at least one new example; after a failed run, scheduled runs wait a while.
Lease
    ``lease_s``: how long the cluster-wide training lock (Redis) and the run's database lease live
    without a heartbeat. A trainer killed mid-run stops renewing; after ``lease_s`` the lock frees
    itself and the run is marked failed.
Storage
    ``adapter_dir``, ``base_model``: where versions' artifact directories are written and which
    base model they are trained on.
Data
    ``variant_mix``, ``init_from``, ``rehearsal_examples``, ``max_length``: which example formats are trained on, whether
    the run continues the active adapter on the examples it has not seen or trains a fresh adapter
    on all of them, and the longest example (prompt + target + EOS) in tokens.
LoRA
    ``lora_rank``, ``lora_alpha``, ``lora_dropout``, ``lora_target_modules``.
Optimisation
    ``learning_rate``, ``epochs``, ``batch_size``, ``weight_decay``, ``max_grad_norm``,
    ``lr_scheduler``, ``warmup_steps``, ``seed``.
Precision
    ``device``, ``cpu_threads``, ``dtype``: float32 on CPU, bfloat16 on CUDA unless set.
Gate
    ``gate_min_heldout_tasks``, ``gate_alpha``, ``gate_small_sample_policy``,
    ``gate_primary_metric``, ``gate_pass_tolerance``, ``gate_min_nll_improvement``,
    ``gate_retention_tolerance``, ``gate_max_tasks``, ``gate_max_examples``,
    ``gate_max_new_tokens``: the held-out comparison a candidate must win to be promoted, and
    the retention sets it must not forget (the rule: services/trainer/gate.py).
Promotion
    ``promote_timeout_s``: a passing candidate is sent to ``student.promote`` (the hot-swap).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.config import get_settings, load
from shared.enums import ExampleVariant
from shared.schemas.training import SmallSamplePolicy

VariantMix = Literal["persd", "persd_refine", "persd_combined", "stand"]

# Which stored example variants each mix trains on (the PERsD paper's training-example formats).
MIX_VARIANTS: dict[str, tuple[ExampleVariant, ...]] = {
    "persd": (ExampleVariant.PERSD,),
    "persd_refine": (ExampleVariant.PERSD_REFINE,),
    "persd_combined": (ExampleVariant.PERSD, ExampleVariant.PERSD_REFINE),
    "stand": (ExampleVariant.STAND,),
}

# A run stores every field (what it trained, why it ran, how it was judged) except beat's polling
# period, which changes nothing about a run.
SNAPSHOT_EXCLUDE = frozenset({"check_interval_s"})


class TrainerConfig(BaseSettings):
    """Configuration of the trainer service and of each training run it makes."""

    model_config = SettingsConfigDict(env_prefix="TRAINER_", extra="ignore", frozen=True)

    # --- Trigger ---------------------------------------------------------------------------
    min_new_examples: int = Field(
        50, ge=1, description="N: start a run once this many new training examples arrived"
    )
    interval_minutes: float = Field(
        60.0, gt=0, description="T: or once this many minutes passed with any new example"
    )
    check_interval_s: float = Field(
        60.0,
        gt=0,
        description="how often beat sends scheduler.training_check (lease recovery and the"
        " trigger)",
    )
    failure_backoff_minutes: float = Field(
        10.0, ge=0, description="after a failed run, scheduled runs wait this long"
    )

    # --- Lease -----------------------------------------------------------------------------
    lease_s: float = Field(
        120.0,
        ge=3,
        description="lifetime of the training lock and the run's lease without a heartbeat;"
        " heartbeats come every lease_s / 3",
    )

    # --- Storage ---------------------------------------------------------------------------
    adapter_dir: Path = Field(
        Path("adapters"),
        description="artifact root; a relative path is under PERSD_DATA_DIR. One directory per"
        " version, never rewritten",
    )
    base_model: str = Field(
        "",
        description="base model path or name; empty means the student's (STUDENT_MODEL), which"
        " must be what vLLM serves",
    )

    # --- Data ------------------------------------------------------------------------------
    variant_mix: VariantMix = Field(
        "persd_combined",
        description="persd (generation), persd_refine (repair from feedback), persd_combined"
        " (both; the paper's best), or stand (standard distillation, for comparison)",
    )
    init_from: Literal["active", "fresh"] = Field(
        "active",
        description="active: continue the active adapter on the examples it has not seen;"
        " fresh: a new adapter on all training examples",
    )
    rehearsal_examples: int = Field(
        500,
        ge=0,
        description="a continued run also trains on the examples its parent learned, up to this"
        " many (a seeded sample when there are more; 0: the new examples only). Continued on new"
        " examples alone, an adapter overwrites its earlier lessons",
    )
    max_length: int = Field(
        1024,
        ge=8,
        description="tokens of prompt + target + EOS; longer examples are skipped and counted"
        " (truncating would teach prompts the student never sees)",
    )

    # --- LoRA ------------------------------------------------------------------------------
    lora_rank: int = Field(8, ge=1, description="r; must not exceed the server's --max-lora-rank")
    lora_alpha: float = Field(16.0, gt=0, description="scaling is alpha / r")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the LoRA path")
    # NoDecode: the environment gives "q_proj,v_proj", not JSON.
    lora_target_modules: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        min_length=1,
        description="module names adapted; vLLM serves LoRA on attention and MLP projections",
    )

    # --- Optimisation ----------------------------------------------------------------------
    learning_rate: float = Field(2e-4, gt=0, description="AdamW's peak learning rate")
    epochs: int = Field(3, ge=1, description="passes over the run's examples")
    batch_size: int = Field(8, ge=1, description="examples per optimizer step (also NLL scoring)")
    weight_decay: float = Field(0.0, ge=0, description="AdamW's decoupled weight decay")
    max_grad_norm: float = Field(1.0, ge=0, description="0 disables clipping")
    lr_scheduler: Literal["constant", "linear"] = Field(
        "linear", description="linear decays to 0 at the last step"
    )
    warmup_steps: int = Field(0, ge=0, description="linear warm-up from 0 over this many steps")
    seed: int = Field(0, description="seeds initialisation, dropout and example order")
    group_by_length: bool = Field(
        True,
        description="batch examples of similar length together (shuffled windows sorted by"
        " length) instead of padding random batches to their longest",
    )

    # --- Precision -------------------------------------------------------------------------
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: cuda if available")
    cpu_threads: int = Field(
        0,
        ge=0,
        description="torch threads when training on CPU; 0: the cores the rest of the stack"
        " leaves free (this process's cores less the 1-minute load, at least 1). Oversubscribed"
        " threads are several times slower than one (measured: 6.5k vs 0.8k tokens/s on a busy"
        " 2-core host)",
    )
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="auto: float32 on CPU, bfloat16 on CUDA (LoRA weights stay float32)"
    )

    # --- Gate ------------------------------------------------------------------------------
    gate_min_heldout_tasks: int = Field(
        30,
        ge=1,
        description="held-out tasks the paired test needs; at or above it a candidate is"
        " promoted only on a significant pass@1 gain (McNemar's exact test), below it the"
        " small-sample policy decides",
    )
    gate_alpha: float = Field(
        0.05, gt=0, lt=1, description="significance level of the held-out test (p < alpha)"
    )
    gate_small_sample_policy: SmallSamplePolicy = Field(
        "promote_on_nll",
        description="below gate_min_heldout_tasks: hold (never promote without the test; for"
        " an operator who must never ship an unproven model) or promote_on_nll (the primary"
        " metric decides, as before the test existed; small deployments and the demo keep"
        " promoting)",
    )
    gate_primary_metric: Literal["nll", "pass@1"] = Field(
        "nll",
        description="only below gate_min_heldout_tasks under promote_on_nll: the metric an"
        " unproven candidate must improve, held-out refinement NLL (lower is better) or raw"
        " held-out pass@1 (higher is better, no test)",
    )
    gate_pass_tolerance: float = Field(
        0.0,
        ge=0,
        le=1,
        description="how far held-out pass@1 may fall below the active adapter's (absolute);"
        " further refuses, whatever the other figures",
    )
    gate_min_nll_improvement: float = Field(
        0.0, ge=0, description="NLL must fall by more than this (nats per token)"
    )
    gate_retention_tolerance: float = Field(
        0.05,
        ge=0,
        le=1,
        description="how far pass@1 on the lessons and on the abilities retention sets may fall"
        " below the active side's (absolute); further refuses, naming the lost tasks",
    )
    gate_max_tasks: int = Field(200, ge=1, description="held-out tasks generated and executed")
    gate_max_examples: int = Field(500, ge=1, description="held-out examples scored for NLL")
    gate_max_new_tokens: int = Field(256, ge=1, description="completion length for pass@1")
    gate_request_timeout_s: float = Field(
        120.0, gt=0, description="per-completion timeout against the student's server"
    )
    gate_execute_timeout_s: float = Field(
        600.0, gt=0, description="wait for the executor's verdicts on one side's programs"
    )

    # --- Promotion -------------------------------------------------------------------------
    promote_timeout_s: float = Field(300.0, gt=0, description="wait for the hot-swap's reply")

    @field_validator("lora_target_modules", mode="before")
    @classmethod
    def _split_modules(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value.lstrip().startswith("["):  # a JSON list is accepted too
                try:
                    return json.loads(value)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"not a JSON list of module names ({exc.msg})") from None
            return [m.strip() for m in value.split(",") if m.strip()]
        return value

    @model_validator(mode="after")
    def _coherent(self) -> TrainerConfig:
        if self.device == "cpu" and self.dtype == "bfloat16":
            raise ValueError(
                "dtype bfloat16 needs device cuda (TRAINER_DEVICE); CPU training runs in float32"
            )
        return self

    @property
    def variants(self) -> tuple[ExampleVariant, ...]:
        return MIX_VARIANTS[self.variant_mix]

    @property
    def resolved_adapter_dir(self) -> Path:
        path = self.adapter_dir
        if not path.is_absolute():
            path = get_settings().data_dir / path
        return path.resolve()

    @property
    def resolved_base_model(self) -> str:
        if self.base_model:
            return self.base_model
        from shared.student_settings import get_student_settings

        return get_student_settings().model_path

    def snapshot(self) -> dict[str, Any]:
        """What a run stores: every field, JSON-ready, with paths resolved."""
        data = self.model_dump(mode="json", exclude=set(SNAPSHOT_EXCLUDE))
        data["adapter_dir"] = str(self.resolved_adapter_dir)
        data["base_model"] = self.resolved_base_model
        return data


def load_config(**overrides: Any) -> TrainerConfig:
    """The environment's configuration with ``overrides`` on top; errors name the variable or
    the overridden field."""
    base = load(TrainerConfig)
    if not overrides:
        return base
    unknown = sorted(set(overrides) - set(TrainerConfig.model_fields))
    if unknown:
        from shared.errors import ConfigError

        raise ConfigError(f"unknown trainer setting(s): {', '.join(unknown)}")
    return _validated(base.model_dump() | overrides)


def _validated(values: dict[str, Any]) -> TrainerConfig:
    from pydantic import ValidationError

    from shared.errors import ConfigError

    try:
        # Build without reading the environment again: overrides win over it.
        return TrainerConfig.model_validate(values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = f"{err['loc'][0]}: " if err["loc"] else ""
            problems.append(where + err["msg"].removeprefix("Value error, "))
        raise ConfigError("invalid trainer configuration: " + "; ".join(problems)) from None

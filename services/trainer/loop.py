"""The LoRA training loop: peft on a causal LM, loss on target tokens only.

Deliberately a plain PyTorch loop rather than ``transformers.Trainer``: the benchmark holds it to
0.9x the throughput of a bare peft loop, and the service needs exactly three hooks (seeded order,
a per-step callback for the lease heartbeat and live progress, and the loss curve), not a
framework. Batches are grouped by length (``TRAINER_GROUP_BY_LENGTH``), so little of a batch is
padding. Heavy imports
stay inside the functions so workers and the CLI start fast.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.trainer.config import TrainerConfig
from services.trainer.encoding import Encoded, Pair, collate, encode_pairs, pad_id
from shared.errors import InvalidInput
from shared.schemas.training import LossPoint


@dataclass(frozen=True)
class StepInfo:
    """What the loop knows after an optimizer step (the run's live progress is built from it)."""

    step: int
    total_steps: int
    epoch: int  # 1-based
    epochs: int
    loss: float
    tokens: int  # non-padding tokens so far
    seconds: float  # loop time so far


# Called after every optimizer step; raising aborts the run.
StepCallback = Callable[[StepInfo], None]


@dataclass
class TrainResult:
    loss_curve: list[LossPoint]
    steps: int
    examples: int
    tokens: int  # non-padding tokens through forward and backward, all epochs
    target_tokens: int  # tokens that carried loss, all epochs
    seconds: float  # the loop alone: no model loading, tokenization or saving
    skipped_too_long: list[int] = field(default_factory=list)
    device: str = "cpu"
    dtype: str = "float32"
    lora: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def resolve_precision(config: TrainerConfig) -> tuple[str, Any]:
    """(device, torch dtype) for a run: float32 on CPU, bfloat16 on CUDA unless configured.
    On CPU this also sets torch's thread count (process-wide: the trainer worker is solo)."""
    import torch

    from shared.errors import ConfigError

    device = config.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("TRAINER_DEVICE is cuda but no CUDA device is available")
    name = config.dtype
    if name == "auto":
        name = "bfloat16" if device == "cuda" else "float32"
    if device == "cpu":
        torch.set_num_threads(cpu_threads(config))
    return device, getattr(torch, name)


def cpu_threads(config: TrainerConfig) -> int:
    """``cpu_threads``, or the cores the rest of the stack leaves free: this process's cores less
    the run queue's recent load (vLLM, the sandbox slots and the workers on a shared host). An
    oversubscribed thread costs far more than a missing one (see the setting), so a busy host
    trains on fewer threads, never on more than it has."""
    import math
    import os

    if config.cpu_threads:
        return config.cpu_threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    busy = math.ceil(os.getloadavg()[0] - 0.25) if hasattr(os, "getloadavg") else 0
    return max(1, (cores or 1) - max(0, busy))


def seed_everything(seed: int) -> None:
    import random

    import torch

    random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def load_tokenizer(base_model: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(base_model)


def load_base_model(base_model: str, device: str, dtype: Any) -> Any:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_model, dtype=dtype)
    return model.to(device)


def make_peft_model(
    base: Any, config: TrainerConfig, init_adapter: str | Path | None
) -> tuple[Any, dict[str, Any]]:
    """A trainable LoRA model: the parent adapter's weights and shape when continuing, a fresh
    adapter of the configured shape otherwise. Returns the model and the LoRA settings used."""
    from peft import LoraConfig, PeftModel, get_peft_model

    if init_adapter is not None:
        model = PeftModel.from_pretrained(base, str(init_adapter), is_trainable=True)
        lc = model.peft_config["default"]
    else:
        lc = LoraConfig(
            r=config.lora_rank,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=list(config.lora_target_modules),
            bias="none",
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(base, lc)
    used = {
        "r": lc.r,
        "alpha": lc.lora_alpha,
        "dropout": lc.lora_dropout,
        "target_modules": sorted(lc.target_modules),
        "from_parent": init_adapter is not None,
    }
    return model, used


# Examples sorted by length within windows of this many batches: enough to put similar lengths
# together, few enough that an epoch still mixes short and long batches in a random order.
GROUP_WINDOW_BATCHES = 64


def batches(
    n: int, batch_size: int, epoch: int, seed: int, lengths: Sequence[int] | None = None
) -> list[list[int]]:
    """Seeded shuffled index batches for one epoch: the same seed gives the same order.

    With ``lengths``, batches are grouped by length: the shuffled order is cut into windows,
    each window sorted by length and cut into batches, and the batches shuffled again. A batch
    then pads to a length near its own examples' rather than to the longest of a random draw
    (the padding is compute thrown away: with code lengths spread 5x, most of it)."""
    import torch

    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(n, generator=gen).tolist()
    if lengths is None:
        return [order[i : i + batch_size] for i in range(0, n, batch_size)]
    window = batch_size * GROUP_WINDOW_BATCHES
    grouped: list[list[int]] = []
    for start in range(0, n, window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i], reverse=True)
        grouped += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    shuffle = torch.randperm(len(grouped), generator=gen).tolist()
    return [grouped[i] for i in shuffle]


def lr_factor(config: TrainerConfig, total_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if config.warmup_steps and step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        if config.lr_scheduler == "constant":
            return 1.0
        span = max(1, total_steps - config.warmup_steps)
        return max(0.0, 1.0 - (step - config.warmup_steps) / span)

    return factor


def run_loop(
    model: Any,
    examples: Sequence[Encoded],
    config: TrainerConfig,
    *,
    pad: int,
    device: str,
    on_step: StepCallback | None = None,
) -> tuple[list[dict[str, float]], int, int, int, float]:
    """The optimisation itself. Returns (loss curve, steps, tokens, target tokens, seconds)."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(examples) / config.batch_size)
    total = steps_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config, total))
    model.train()
    curve: list[LossPoint] = []
    tokens = target_tokens = step = 0
    lengths = [len(e.input_ids) for e in examples] if config.group_by_length else None
    started = time.perf_counter()
    for epoch in range(config.epochs):
        for index in batches(len(examples), config.batch_size, epoch, config.seed, lengths):
            chunk = [examples[i] for i in index]
            batch = {k: v.to(device) for k, v in collate(chunk, pad).items()}
            loss = model(**batch).loss
            loss.backward()
            if config.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            value = float(loss.detach())
            tokens += sum(len(e.input_ids) for e in chunk)
            target_tokens += sum(e.target_tokens for e in chunk)
            curve.append(LossPoint(step=step, epoch=epoch + 1, loss=round(value, 6), lr=lr))
            if on_step is not None:
                elapsed = time.perf_counter() - started
                on_step(StepInfo(step, total, epoch + 1, config.epochs, value, tokens, elapsed))
    if device == "cuda":
        torch.cuda.synchronize()
    return curve, step, tokens, target_tokens, time.perf_counter() - started


def train_lora(
    config: TrainerConfig,
    pairs: Sequence[Pair],
    output_dir: Path,
    *,
    base_model: str,
    init_adapter: str | Path | None = None,
    on_step: StepCallback | None = None,
) -> TrainResult:
    """Train a LoRA adapter on ``pairs`` and save it (peft format) into ``output_dir``."""
    device, dtype = resolve_precision(config)
    seed_everything(config.seed)
    tokenizer = load_tokenizer(base_model)
    encoded = encode_pairs(tokenizer, pairs, config.max_length)
    if not encoded.examples:
        raise InvalidInput(
            f"nothing to train on: {len(pairs)} example(s) given, {len(encoded.skipped_too_long)}"
            f" longer than max_length={config.max_length} tokens (TRAINER_MAX_LENGTH)"
        )
    base = load_base_model(base_model, device, dtype)
    # Seed again after loading: LoRA's A matrices are drawn from the global generator.
    seed_everything(config.seed)
    model, lora = make_peft_model(base, config, init_adapter)
    curve, steps, tokens, target_tokens, seconds = run_loop(
        model, encoded.examples, config, pad=pad_id(tokenizer), device=device, on_step=on_step
    )
    model.save_pretrained(str(output_dir))
    return TrainResult(
        loss_curve=curve,
        steps=steps,
        examples=len(encoded.examples),
        tokens=tokens,
        target_tokens=target_tokens,
        seconds=seconds,
        skipped_too_long=encoded.skipped_too_long,
        device=device,
        dtype=str(dtype).removeprefix("torch."),
        lora=lora,
    )

"""The pretrained offline student: a small Llama trained from scratch on the suite's pretraining
pool, so that it writes nearly-right code for suite tasks and distillation has something to fix.

It learns the pipeline grammar (one line per phrase) on the operations it is shown; the lesson
operations are never in its data (see :mod:`services.suite.grammar`), so it fails tasks that use
them, mostly on that one line. Examples are (generation prompt, reference body) pairs encoded
exactly as the trainer encodes LoRA examples (:mod:`services.trainer.encoding`), so the student is
pretrained on the very prompt format it is served and distilled with.

Builds are seeded and cached like the tiny student's: a ``persd-builder.json`` marker holding the
builder version and the spec; a matching directory is reused; a build is written into a staging
directory and renamed into place. Two presets:

- ``full``: the acceptance student (``$PERSD_DATA_DIR/models/suite-student``); 48 000 tasks,
  about 10 minutes on 2 cores (the limit is 20).
- ``small``: 32 000 tasks, about 6 minutes, for the test suite (``.../suite-student-small``).
  Weaker on tasks without a lesson, but it has learnt the format and the operations.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from services.student.tiny_model import (
    MARKER,
    check_head_dim,
    new_llama,
    stdlib_corpus,
    swap_into_place,
    write_tokenizer,
)

# Bump when anything below changes the files written: cached builds are then rebuilt.
BUILDER_VERSION = 1
TRAIN_LOG = "pretrain-log.json"


class Budget(StrEnum):
    FULL = "full"
    SMALL = "small"


@dataclass(frozen=True)
class PretrainSpec:
    """Everything that determines a pretrained student. head_dim = hidden / heads >= 32 (vLLM's
    CPU attention)."""

    suite_seed: int = 0
    tasks: int = 48_000  # size of the pretraining pool drawn
    epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 3e-3
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05  # cosine decay to this share of the peak
    weight_decay: float = 0.01
    vocab_size: int = 2048
    hidden_size: int = 128
    intermediate_size: int = 512
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    max_position_embeddings: int = 1024
    stdlib_bytes: int = 1_000_000  # code beside the suite text, so other code tokenizes sensibly
    seed: int = 1234
    threads: int = 2

    def __post_init__(self) -> None:
        check_head_dim("pretrained student", self.hidden_size, self.num_attention_heads)


PRESETS: dict[Budget, PretrainSpec] = {
    Budget.FULL: PretrainSpec(),
    Budget.SMALL: PretrainSpec(tasks=32_000),
}


def pretrained_student_dir(budget: Budget | str = Budget.FULL) -> Path:
    from shared.config import get_settings

    name = "suite-student" if Budget(budget) is Budget.FULL else f"suite-student-{budget}"
    return (get_settings().data_dir / "models" / name).resolve()


def _marker(spec: PretrainSpec) -> dict[str, Any]:
    from services.suite import SUITE_VERSION

    return {
        "builder_version": BUILDER_VERSION,
        "suite_version": SUITE_VERSION,
        "kind": "suite-student",
        "spec": asdict(spec),
    }


def is_built(target: Path, spec: PretrainSpec) -> bool:
    try:
        info = json.loads((Path(target) / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return info == _marker(spec)


def build_pretrained_student(
    target: Path, spec: PretrainSpec = PRESETS[Budget.FULL], *, force: bool = False
) -> Path:
    """Pretrain the student into ``target`` unless an identical build is already there."""
    target = Path(target)
    if not force and is_built(target, spec):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        pairs = pretraining_pairs(spec)
        write_tokenizer(
            staging,
            [p.input + p.target for p in pairs] + stdlib_corpus(spec.stdlib_bytes),
            spec.vocab_size,
            spec.max_position_embeddings,
            split_digits=True,
        )
        log = _train(staging, spec, pairs)
        (staging / TRAIN_LOG).write_text(json.dumps(log, indent=2) + "\n")
        (staging / MARKER).write_text(json.dumps(_marker(spec), indent=2) + "\n")
        swap_into_place(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def pretraining_pairs(spec: PretrainSpec) -> list:
    """(generation prompt, reference body) for every task of the pretraining pool."""
    from services.suite import Pool, make_pool
    from services.trainer.encoding import Pair
    from shared.prompts import generation_prompt

    return [
        Pair(generation_prompt(t.description, t.header), t.body, i)
        for i, t in enumerate(make_pool(Pool.PRETRAIN, spec.suite_seed, spec.tasks))
    ]


def _new_model(out: Path, spec: PretrainSpec) -> tuple[Any, Any]:
    return new_llama(
        out,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_attention_heads,
        max_position_embeddings=spec.max_position_embeddings,
        seed=spec.seed,
    )


def _lr_at(step: int, total: int, spec: PretrainSpec) -> float:
    if step < spec.warmup_steps:
        return spec.learning_rate * (step + 1) / spec.warmup_steps
    progress = (step - spec.warmup_steps) / max(1, total - spec.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return spec.learning_rate * (spec.min_lr_ratio + (1 - spec.min_lr_ratio) * cosine)


def _train(out: Path, spec: PretrainSpec, pairs: list) -> dict[str, Any]:
    import torch
    from tqdm import tqdm

    from services.trainer.encoding import collate, encode_pair, pad_id

    torch.set_num_threads(spec.threads)
    model, tokenizer = _new_model(out, spec)
    encoded = [encode_pair(tokenizer, p) for p in pairs]
    pad = pad_id(tokenizer)
    rng = random.Random(spec.seed)
    batches: list[list] = []
    for _ in range(spec.epochs):
        order = list(encoded)
        rng.shuffle(order)
        batches += [order[i : i + spec.batch_size] for i in range(0, len(order), spec.batch_size)]
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=spec.learning_rate,
        betas=(0.9, 0.98),
        weight_decay=spec.weight_decay,
    )
    model.train()
    losses: list[float] = []
    tokens = 0
    start = time.monotonic()
    bar = tqdm(batches, desc="pretraining the suite student", unit="step", mininterval=2.0)
    for step, batch in enumerate(bar):
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, len(batches), spec)
        tensors = collate(batch, pad)
        loss = model(**tensors).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        tokens += int(tensors["attention_mask"].sum())
        losses.append(float(loss.detach()))
        if step % 20 == 0:
            elapsed = time.monotonic() - start
            bar.set_postfix(
                loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}",
                tok_s=f"{tokens / max(elapsed, 1e-9):.0f}",
            )
    wall = time.monotonic() - start
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    tail = losses[-50:]
    return {
        "steps": len(batches),
        "examples": len(encoded),
        "tokens": tokens,
        "wall_s": round(wall, 1),
        "tokens_per_s": round(tokens / wall, 1),
        "final_loss": round(sum(tail) / len(tail), 4),
        "parameters": sum(p.numel() for p in model.parameters()),
        "loss_every_50": [round(x, 4) for x in losses[::50]],
    }


def spec_for(budget: Budget | str, **overrides: Any) -> PretrainSpec:
    return replace(PRESETS[Budget(budget)], **overrides)

"""Mean negative log-likelihood of held-out targets under several adapters of one base model.

One base model is loaded; each adapter is attached to it under its own peft name and selected in
turn (the base model itself through ``disable_adapter``), so scoring N adapters costs one model
load. The figure is per target token (EOS included), summed over all examples before dividing,
so long and short refinements weigh by their tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.trainer.config import TrainerConfig
from services.trainer.encoding import IGNORE_INDEX, Encoded, Pair, collate, encode_pairs, pad_id
from services.trainer.loop import load_base_model, load_tokenizer, resolve_precision

BASE = None  # an adapter path of None scores the base model


@dataclass(frozen=True)
class NllScore:
    nll: float | None  # None when nothing could be scored
    tokens: int
    examples: int
    skipped_too_long: int


def _score(
    model: Any, examples: Sequence[Encoded], pad: int, device: str, batch_size: int
) -> tuple[float, int]:
    import torch

    total, tokens = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            batch = {
                k: v.to(device)
                for k, v in collate(examples[start : start + batch_size], pad).items()
            }
            logits = model(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
            ).logits
            labels = batch["labels"][:, 1:]
            logits = logits[:, :-1].float()
            nll = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.size(-1)),
                labels.reshape(-1),
                ignore_index=IGNORE_INDEX,
                reduction="sum",
            )
            total += float(nll)
            tokens += int((labels != IGNORE_INDEX).sum())
    return total, tokens


def mean_nll(
    config: TrainerConfig,
    base_model: str,
    adapters: dict[str, str | Path | None],
    pairs: Sequence[Pair],
) -> dict[str, NllScore]:
    """Score ``pairs`` under each named adapter path (None: the base model)."""
    from peft import PeftModel

    device, dtype = resolve_precision(config)
    tokenizer = load_tokenizer(base_model)
    encoded = encode_pairs(tokenizer, pairs, config.max_length)
    if not encoded.examples:
        empty = NllScore(None, 0, 0, len(encoded.skipped_too_long))
        return {label: empty for label in adapters}
    base = load_base_model(base_model, device, dtype)
    base.eval()
    model: Any = None
    for label, path in adapters.items():
        if path is None:
            continue
        if model is None:
            model = PeftModel.from_pretrained(base, str(path), adapter_name=label)
        else:
            model.load_adapter(str(path), adapter_name=label)
    model = model if model is not None else base
    model.eval()
    pad = pad_id(tokenizer)
    scores: dict[str, NllScore] = {}
    for label, path in adapters.items():
        if path is None:
            if model is base:
                total, tokens = _score(base, encoded.examples, pad, device, config.batch_size)
            else:
                with model.disable_adapter():
                    total, tokens = _score(model, encoded.examples, pad, device, config.batch_size)
        else:
            model.set_adapter(label)
            total, tokens = _score(model, encoded.examples, pad, device, config.batch_size)
        scores[label] = NllScore(
            nll=total / tokens if tokens else None,
            tokens=tokens,
            examples=len(encoded.examples),
            skipped_too_long=len(encoded.skipped_too_long),
        )
    return scores

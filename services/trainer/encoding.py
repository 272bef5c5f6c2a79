"""Turning (input, target) pairs into token ids with the loss on the target only.

The prompt is tokenized exactly as vLLM tokenizes a completion prompt (the tokenizer's own special
tokens, if it adds any), and the target separately, without special tokens, followed by EOS. Two
separate tokenizations rather than one of the concatenation: at inference the model sees the
prompt's tokens and produces the target's, so a BPE merge across the boundary (a header's "\\n"
with the body's indentation) would train a split the student never meets.

Labels are -100 (ignored by the loss) on prompt and padding positions, so only target tokens and
the EOS that teaches the student to stop are learned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shared.errors import ConfigError

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Pair:
    """One training example as the trainer sees it."""

    input: str
    target: str
    example_id: int = 0


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]
    example_id: int = 0

    @property
    def target_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


@dataclass(frozen=True)
class EncodedSet:
    examples: list[Encoded]
    skipped_too_long: list[int]  # example ids over max_length


def eos_id(tokenizer: Any) -> int:
    if tokenizer.eos_token_id is None:
        raise ConfigError(
            f"the base model's tokenizer ({tokenizer.name_or_path}) has no EOS token; the"
            " trainer appends EOS to every target so the student learns to stop"
        )
    return int(tokenizer.eos_token_id)


def pad_id(tokenizer: Any) -> int:
    return int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_id(tokenizer))


def encode_pair(tokenizer: Any, pair: Pair) -> Encoded:
    prompt = tokenizer(pair.input, add_special_tokens=True)["input_ids"]
    target = tokenizer(pair.target, add_special_tokens=False)["input_ids"] + [eos_id(tokenizer)]
    return Encoded(
        input_ids=list(prompt) + list(target),
        labels=[IGNORE_INDEX] * len(prompt) + list(target),
        example_id=pair.example_id,
    )


def encode_pairs(tokenizer: Any, pairs: Sequence[Pair], max_length: int) -> EncodedSet:
    kept: list[Encoded] = []
    skipped: list[int] = []
    for pair in pairs:
        enc = encode_pair(tokenizer, pair)
        if len(enc.input_ids) > max_length:
            skipped.append(pair.example_id)
        else:
            kept.append(enc)
    return EncodedSet(kept, skipped)


def collate(batch: Sequence[Encoded], pad: int) -> dict[str, Any]:
    """Right-padded tensors for one batch: input_ids, attention_mask, labels."""
    import torch

    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    for row, e in enumerate(batch):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids, dtype=torch.long)
        mask[row, :n] = 1
        labels[row, :n] = torch.tensor(e.labels, dtype=torch.long)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}

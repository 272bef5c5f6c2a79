from __future__ import annotations

import copy

import pytest
import torch

from services.trainer.encoding import (
    IGNORE_INDEX,
    Pair,
    collate,
    encode_pair,
    encode_pairs,
    pad_id,
)
from services.trainer.loop import load_tokenizer
from shared.errors import ConfigError
from shared.prompts import generation_prompt

PROMPT = generation_prompt("Return the square of x.", "def square(x):")
TARGET = "    return x * x\n"


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    return load_tokenizer(str(tiny_model))


def test_loss_is_on_the_target_only_and_ends_with_eos(tokenizer) -> None:
    enc = encode_pair(tokenizer, Pair(PROMPT, TARGET, 7))
    prompt_ids = tokenizer(PROMPT)["input_ids"]
    target_ids = tokenizer(TARGET, add_special_tokens=False)["input_ids"]
    assert enc.input_ids == prompt_ids + target_ids + [tokenizer.eos_token_id]
    assert enc.labels == [IGNORE_INDEX] * len(prompt_ids) + target_ids + [tokenizer.eos_token_id]
    assert enc.target_tokens == len(target_ids) + 1
    assert enc.example_id == 7
    # The target decodes back to itself: nothing of it was merged into the prompt's tokens.
    assert tokenizer.decode(target_ids) == TARGET


def test_examples_over_max_length_are_skipped_and_named(tokenizer) -> None:
    short = Pair(PROMPT, TARGET, 1)
    long = Pair(PROMPT, "    return x\n" * 100, 2)
    n_short = len(encode_pair(tokenizer, short).input_ids)
    result = encode_pairs(tokenizer, [short, long], max_length=n_short)
    assert [e.example_id for e in result.examples] == [1]
    assert result.skipped_too_long == [2]


def test_collate_pads_right_and_masks_padding(tokenizer) -> None:
    a = encode_pair(tokenizer, Pair(PROMPT, TARGET))
    b = encode_pair(tokenizer, Pair(PROMPT, "    return x\n"))
    pad = pad_id(tokenizer)
    batch = collate([a, b], pad)
    width = max(len(a.input_ids), len(b.input_ids))
    assert batch["input_ids"].shape == (2, width)
    short = min((a, b), key=lambda e: len(e.input_ids))
    row = 0 if short is a else 1
    n = len(short.input_ids)
    assert batch["input_ids"][row, n:].tolist() == [pad] * (width - n)
    assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (width - n)
    assert batch["labels"][row].tolist() == short.labels + [IGNORE_INDEX] * (width - n)


def test_model_loss_equals_cross_entropy_over_target_tokens(tokenizer, tiny_model) -> None:
    from services.trainer.loop import load_base_model

    model = load_base_model(str(tiny_model), "cpu", torch.float32)
    enc = encode_pair(tokenizer, Pair(PROMPT, TARGET))
    batch = collate([enc], pad_id(tokenizer))
    with torch.no_grad():
        out = model(**batch)
    logits = out.logits[0, :-1]
    labels = torch.tensor(enc.labels[1:])
    keep = labels != IGNORE_INDEX
    manual = torch.nn.functional.cross_entropy(logits[keep], labels[keep])
    assert keep.sum().item() == enc.target_tokens
    assert out.loss.item() == pytest.approx(manual.item(), rel=1e-6)


def test_a_tokenizer_without_eos_is_refused(tokenizer) -> None:
    no_eos = copy.deepcopy(tokenizer)
    no_eos.eos_token = None
    with pytest.raises(ConfigError) as err:
        encode_pair(no_eos, Pair(PROMPT, TARGET))
    assert err.value.message.endswith(
        "has no EOS token; the trainer appends EOS to every target so the student learns to stop"
    )

"""The LoRA loop on the tiny student: what changes, what does not, and that it is repeatable."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from services.trainer.artifacts import content_hash
from services.trainer.encoding import Pair, encode_pairs, pad_id
from services.trainer.loop import (
    load_base_model,
    load_tokenizer,
    make_peft_model,
    resolve_precision,
    run_loop,
    seed_everything,
    train_lora,
)
from shared.errors import ConfigError, InvalidInput
from shared.prompts import generation_prompt
from tests.trainer.support import ALL_MODULES, SET_A

PAIRS = [Pair(generation_prompt(s.description, s.header), s.body, i) for i, s in enumerate(SET_A)]


def _base_name(peft_name: str) -> str:
    return peft_name.removeprefix("base_model.model.").replace(".base_layer", "")


def test_lora_weights_change_and_base_weights_do_not(make_config, tiny_model) -> None:
    config = make_config(epochs=3, batch_size=4)
    tokenizer = load_tokenizer(str(tiny_model))
    base = load_base_model(str(tiny_model), "cpu", torch.float32)
    seed_everything(0)
    model, lora = make_peft_model(base, config, None)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    examples = encode_pairs(tokenizer, PAIRS, 512).examples
    curve, steps, *_ = run_loop(model, examples, config, pad=pad_id(tokenizer), device="cpu")

    assert steps == 9 and len(curve) == 9  # 10 examples, batches of 4, 3 epochs
    assert len(trainable) == 2 * 2 * len(ALL_MODULES)  # A and B, 2 layers, 7 modules
    after = dict(model.named_parameters())
    changed = [n for n in trainable if not torch.equal(before[n], after[n])]
    assert sorted(changed) == sorted(trainable)
    # Every frozen weight still equals the base model's file, bit for bit.
    on_disk = load_file(str(Path(tiny_model) / "model.safetensors"))
    frozen = {_base_name(n): p for n, p in after.items() if n not in trainable}
    assert set(frozen) == set(on_disk)
    for name, weight in on_disk.items():
        assert torch.equal(frozen[name], weight), f"base weight {name} changed"
    assert lora == {
        "r": 8,
        "alpha": 16.0,
        "dropout": 0.0,
        "target_modules": sorted(ALL_MODULES),
        "from_parent": False,
    }


def test_training_is_seeded_and_reproducible(make_config, tiny_model, tmp_path) -> None:
    config = make_config(epochs=2, batch_size=4, lora_dropout=0.1)
    runs = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        out = tmp_path / name
        out.mkdir()
        cfg = config.model_copy(update={"seed": seed})
        result = train_lora(cfg, PAIRS, out, base_model=str(tiny_model))
        runs.append((result, content_hash(out)))
    (ra, ha), (rb, hb), (rc, hc) = runs
    assert [p.loss for p in ra.loss_curve] == [p.loss for p in rb.loss_curve]
    assert ha == hb
    assert hc != ha
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
    ]


def test_continuing_starts_from_the_parent_weights(make_config, tiny_model, tmp_path) -> None:
    parent_dir = tmp_path / "parent"
    parent_dir.mkdir()
    train_lora(make_config(epochs=2, batch_size=8), PAIRS, parent_dir, base_model=str(tiny_model))
    parent = load_file(str(parent_dir / "adapter_model.safetensors"))
    base = load_base_model(str(tiny_model), "cpu", torch.float32)
    # Shape settings of the run are ignored when continuing: the parent's are kept.
    model, lora = make_peft_model(base, make_config(lora_rank=4), parent_dir)
    assert lora["from_parent"] is True and lora["r"] == 8
    state = {n.replace(".default", ""): p for n, p in model.named_parameters() if p.requires_grad}
    assert len(state) == len(parent)
    for name, weight in parent.items():
        assert torch.equal(state[name], weight), name


def test_precision_defaults_and_refusals(make_config) -> None:
    assert resolve_precision(make_config()) == ("cpu", torch.float32)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError) as err:
            resolve_precision(make_config(device="cuda"))
        assert err.value.message == "TRAINER_DEVICE is cuda but no CUDA device is available"


def test_nothing_to_train_is_a_clear_error(make_config, tiny_model, tmp_path) -> None:
    with pytest.raises(InvalidInput) as err:
        train_lora(make_config(max_length=8), PAIRS[:2], tmp_path, base_model=str(tiny_model))
    assert err.value.message == (
        "nothing to train on: 2 example(s) given, 2 longer than max_length=8 tokens"
        " (TRAINER_MAX_LENGTH)"
    )


def test_length_grouped_batches_cover_every_example_once_with_little_padding() -> None:
    from services.trainer.loop import batches

    lengths = [(i * 37) % 400 + 20 for i in range(200)]  # spread 20..419 tokens
    grouped = batches(200, 8, epoch=0, seed=3, lengths=lengths)
    plain = batches(200, 8, epoch=0, seed=3)
    assert sorted(i for b in grouped for i in b) == list(range(200))
    assert batches(200, 8, epoch=0, seed=3, lengths=lengths) == grouped  # seeded
    assert batches(200, 8, epoch=1, seed=3, lengths=lengths) != grouped  # a new order per epoch

    def padded(bs: list[list[int]]) -> int:
        return sum(len(b) * max(lengths[i] for i in b) for b in bs)

    # Padding to the longest of each batch: grouped batches compute little beyond the tokens.
    assert padded(grouped) < 1.1 * sum(lengths) < padded(plain)


def test_each_step_reports_its_progress(make_config, tiny_model, tmp_path) -> None:
    steps = []
    config = make_config(epochs=2, batch_size=2)
    train_lora(config, PAIRS, tmp_path, base_model=str(tiny_model), on_step=steps.append)
    total = 2 * -(-len(PAIRS) // 2)
    assert [s.step for s in steps] == list(range(1, total + 1))
    assert {s.total_steps for s in steps} == {total} and {s.epochs for s in steps} == {2}
    assert [s.epoch for s in steps] == [1] * (total // 2) + [2] * (total // 2)
    assert all(b.tokens > a.tokens and b.seconds >= a.seconds for a, b in pairwise(steps))

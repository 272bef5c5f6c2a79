"""The pretrained suite student: seeded, cached, atomic, and it learns (on a very small budget)."""

from __future__ import annotations

import json

import pytest

from services.student.pretrain import (
    BUILDER_VERSION,
    PRESETS,
    TRAIN_LOG,
    Budget,
    PretrainSpec,
    build_pretrained_student,
    is_built,
    pretrained_student_dir,
    pretraining_pairs,
)
from shared.errors import InvalidInput

# One layer, a few hundred tasks: seconds, yet enough for the loss to fall.
TINY = PretrainSpec(
    tasks=400,
    epochs=2,
    batch_size=16,
    warmup_steps=5,
    vocab_size=600,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=1,
    num_attention_heads=2,
    stdlib_bytes=50_000,
)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_pretrained_student(tmp_path_factory.mktemp("pt") / "student", TINY)


def test_build_is_a_llama_with_digit_tokens_and_a_chat_template(built) -> None:
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(built)
    assert config.model_type == "llama"
    assert config.hidden_size // config.num_attention_heads == 32
    tok = AutoTokenizer.from_pretrained(built)
    pieces = [tok.decode([i]) for i in tok("    return x + 1234\n")["input_ids"]]
    assert pieces[-5:] == ["1", "2", "3", "4", "\n"]
    assert tok.chat_template and tok.eos_token == "<|endoftext|>"
    marker = json.loads((built / "persd-builder.json").read_text())
    assert marker["builder_version"] == BUILDER_VERSION
    assert marker["spec"]["tasks"] == 400


def test_training_lowers_the_loss_and_is_logged(built) -> None:
    log = json.loads((built / TRAIN_LOG).read_text())
    assert log["steps"] == 50 and log["examples"] == 400
    assert log["tokens"] > 0 and log["tokens_per_s"] > 0
    assert log["final_loss"] < 0.75 * log["loss_every_50"][0]


def test_identical_build_is_reused_and_other_spec_rebuilds(built, tmp_path) -> None:
    stamp = (built / "model.safetensors").stat().st_mtime_ns
    assert build_pretrained_student(built, TINY) == built
    assert (built / "model.safetensors").stat().st_mtime_ns == stamp
    other = PretrainSpec(**{**TINY.__dict__, "seed": 7})
    assert not is_built(built, other)
    # the build leaves nothing beside the target (staging directories are renamed or removed)
    assert sorted(p.name for p in built.parent.iterdir()) == [built.name]


def test_build_is_seeded(built, tmp_path) -> None:
    again = build_pretrained_student(tmp_path / "again", TINY)
    for name in ("model.safetensors", "tokenizer.json"):
        assert (again / name).read_bytes() == (built / name).read_bytes(), name


def test_pretraining_data_is_the_pretraining_pool_only() -> None:
    pairs = pretraining_pairs(TINY)
    assert len(pairs) == 400
    assert all(p.input.rstrip().endswith(":") and p.target.startswith("    ") for p in pairs)


def test_presets_and_paths() -> None:
    assert PRESETS[Budget.SMALL].tasks < PRESETS[Budget.FULL].tasks
    assert pretrained_student_dir().name == "suite-student"
    assert pretrained_student_dir("small").name == "suite-student-small"


def test_head_dim_below_32_is_refused() -> None:
    with pytest.raises(InvalidInput, match="head_dim = hidden_size / num_attention_heads"):
        PretrainSpec(hidden_size=64, num_attention_heads=4)

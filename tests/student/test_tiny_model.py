from __future__ import annotations

import json
import subprocess
import sys

import pytest

from services.student.tiny_model import BUILDER_VERSION, TinySpec, build_tiny_student, is_built
from shared.errors import InvalidInput
from tests.support.vllm import tiny_student_path


def test_cached_build_is_a_llama_with_bpe_tokenizer_and_head_dim_32() -> None:
    from transformers import AutoConfig, AutoTokenizer

    path = tiny_student_path()
    config = AutoConfig.from_pretrained(path)
    assert config.model_type == "llama"
    assert config.hidden_size // config.num_attention_heads == 32
    assert (config.hidden_size, config.num_hidden_layers, config.vocab_size) == (128, 2, 4096)
    tok = AutoTokenizer.from_pretrained(path)
    code = "def add(a, b):\n    return a + b\n"
    assert tok.decode(tok(code)["input_ids"]) == code  # byte-level: lossless round trip
    assert len(tok(code)["input_ids"]) < len(code) // 2  # merges learned from Python source
    assert tok.eos_token == "<|endoftext|>"
    marker = json.loads((path / "persd-builder.json").read_text())
    assert marker["builder_version"] == BUILDER_VERSION


def test_build_is_deterministic_and_idempotent(tmp_path) -> None:
    small = TinySpec(corpus_bytes=200_000)
    a = build_tiny_student(tmp_path / "a", small)
    b = build_tiny_student(tmp_path / "b", small)
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    stamp = (a / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_student(tmp_path / "a", small) == a
    assert (a / "model.safetensors").stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert is_built(a, small) and not is_built(a, TinySpec(corpus_bytes=100_000))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # no staging left behind


def test_head_dim_below_32_is_refused() -> None:
    with pytest.raises(InvalidInput) as err:
        TinySpec(hidden_size=64, num_attention_heads=4)
    assert err.value.message == (
        "tiny student: head_dim = hidden_size / num_attention_heads must be a whole number >= 32"
        " (vLLM's CPU attention), got 64 / 4"
    )


def test_build_tiny_student_command_reports_up_to_date(tmp_path) -> None:
    out = tmp_path / "m"
    cmd = [sys.executable, "-m", "services.cli", "build-tiny-student", "--out", str(out)]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"tiny student built: {out}"
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert second.stdout.strip() == f"tiny student up to date: {out}"

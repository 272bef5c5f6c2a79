"""The GPU path: bfloat16 base weights, float32 LoRA weights, on CUDA. Skipped without a GPU.

Runs without the database (``pytest --noconftest tests/trainer/test_cuda.py`` on a GPU host)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from services.trainer.config import load_config
from services.trainer.encoding import Pair, encode_pairs, pad_id
from services.trainer.loop import (
    load_base_model,
    load_tokenizer,
    make_peft_model,
    run_loop,
    seed_everything,
    train_lora,
)
from shared.prompts import generation_prompt
from tests.support.vllm import tiny_student_path
from tests.trainer.support import SET_A, fast_settings

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

PAIRS = [Pair(generation_prompt(s.description, s.header), s.body, i) for i, s in enumerate(SET_A)]


def test_bf16_lora_on_cuda_trains_the_adapter_only(tmp_path) -> None:
    model_dir = str(tiny_student_path())
    config = load_config(**fast_settings(tmp_path, device="cuda", epochs=3, batch_size=4))
    base = load_base_model(model_dir, "cuda", torch.bfloat16)
    seed_everything(0)
    model, _ = make_peft_model(base, config, None)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert {before[n].dtype for n in trainable} == {torch.float32}
    assert {p.dtype for n, p in before.items() if n not in trainable} == {torch.bfloat16}
    tokenizer = load_tokenizer(model_dir)
    examples = encode_pairs(tokenizer, PAIRS, 512).examples
    run_loop(model, examples, config, pad=pad_id(tokenizer), device="cuda")
    after = dict(model.named_parameters())
    assert all(not torch.equal(before[n], after[n]) for n in trainable)
    assert all(torch.equal(before[n], after[n]) for n in before if n not in trainable)


def test_bf16_adapter_learns_and_serves_on_cpu(tmp_path) -> None:
    from peft import PeftModel

    model_dir = str(tiny_student_path())
    out = tmp_path / "out"
    out.mkdir()
    result = train_lora(
        load_config(**fast_settings(tmp_path, device="cuda")), PAIRS, out, base_model=model_dir
    )
    assert (result.device, result.dtype, result.steps) == ("cuda", "bfloat16", 80)
    assert result.loss_curve[-1].loss < result.loss_curve[0].loss - 2
    weights = load_file(str(out / "adapter_model.safetensors"))
    assert weights and all(
        w.dtype == torch.float32 and torch.isfinite(w).all() for w in weights.values()
    )
    # The artifact is device-independent: a CPU float32 server answers with it.
    tokenizer = load_tokenizer(model_dir)
    model = PeftModel.from_pretrained(load_base_model(model_dir, "cpu", torch.float32), out)
    exact = 0
    for pair in PAIRS:
        ids = tokenizer(pair.input, return_tensors="pt")
        gen = model.generate(**ids, max_new_tokens=48, do_sample=False)
        text = tokenizer.decode(gen[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
        exact += text == pair.target
    assert exact >= 8

"""A small peft helper for tests: train a LoRA adapter on the tiny student that memorises given
completions, so a test can tell which adapter version answered.

The production trainer lives in services/trainer; this is only a fixture-maker. The loss is on
the target only, with EOS appended, as in the PERsD training examples.
"""

from __future__ import annotations

from pathlib import Path


def train_memorising_adapter(
    base_model: Path | str,
    pairs: list[tuple[str, str]],
    out_dir: Path,
    *,
    steps: int = 200,
    lr: float = 3e-3,
    rank: int = 8,
    seed: int = 0,
) -> Path:
    """Train an adapter until each prompt's target (then EOS) has probability >= 0.99 per token
    (at most ``steps`` steps; ``steps`` below 10 skips the check, for deliberately bad adapters).
    At lr 3e-3 this takes ~20 steps on the tiny student; 1e-2 oscillates on some seeds."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    model = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32)
    config = LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        lora_dropout=0.0,
        target_modules=[
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ],
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, config)
    batch = [_example(tokenizer, prompt, target) for prompt, target in pairs]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for step in range(steps):
        optimizer.zero_grad()
        loss = sum(model(input_ids=ids, labels=labels).loss for ids, labels in batch) / len(batch)
        loss.backward()
        optimizer.step()
        if step >= 9 and step % 10 == 9 and _memorised(model, batch):
            break
    else:
        if steps >= 10:
            raise AssertionError(f"adapter did not memorise its targets in {steps} steps")
    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    return out_dir


def _memorised(model, batch) -> bool:
    import torch

    model.eval()
    try:
        with torch.no_grad():
            for ids, labels in batch:
                probs = model(input_ids=ids).logits[0, :-1].softmax(-1)
                target = labels[0, 1:]
                mask = target != -100
                if probs[mask].gather(-1, target[mask][:, None]).min() < 0.99:
                    return False
        return True
    finally:
        model.train()


def _example(tokenizer, prompt: str, target: str):
    import torch

    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    target_ids = tokenizer(target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = torch.tensor([prompt_ids + target_ids])
    labels = torch.tensor([[-100] * len(prompt_ids) + target_ids])
    return ids, labels

"""The offline tiny student: a small Llama causal LM with a byte-level BPE tokenizer trained on
the Python standard library's source.

It exists so that the whole pipeline (vLLM serving, LoRA hot-swap, training) runs on a machine
with no model download. Its weights are a seeded random initialisation: it writes nonsense until
an adapter teaches it something, which is exactly what the tests need to tell adapters apart.

The build is deterministic (fixed corpus order, fixed seed) and idempotent: a directory holding a
``persd-builder.json`` with the current :data:`BUILDER_VERSION` is reused as is. A build writes
into a sibling temporary directory and renames it into place, so a concurrent reader never sees a
half-written model and two concurrent builders do not corrupt each other.
"""

from __future__ import annotations

import json
import os
import shutil
import sysconfig
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# Bump when anything below changes the files written: cached builds are then rebuilt.
BUILDER_VERSION = 2
MARKER = "persd-builder.json"

EOS = "<|endoftext|>"
PAD = "<|pad|>"
SPECIAL_TOKENS = [EOS, PAD, "<|im_start|>", "<|im_end|>"]
# A minimal ChatML template so the chat endpoint works for OpenAI clients too.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass(frozen=True)
class TinySpec:
    """Shape of the tiny model. head_dim = hidden / heads must stay >= 32: vLLM's CPU attention
    has no kernel for smaller heads and dies on the first request (after /health passed)."""

    vocab_size: int = 4096
    hidden_size: int = 128
    intermediate_size: int = 344
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 4
    max_position_embeddings: int = 2048
    seed: int = 1234
    # Output-layer init scale. With the usual 0.02 the logits of a random 128-wide model stay
    # within a few units, so no adapter can make an answer more likely than ~0.3% and sampling
    # at temperature 0.3 scrambles even a memorised answer. At 0.3 a LoRA adapter trained for a
    # few dozen steps makes its answer near-certain, which is what tests and demos need.
    lm_head_std: float = 0.3
    corpus_bytes: int = 3_000_000  # enough stdlib source for a code-shaped vocabulary

    def __post_init__(self) -> None:
        check_head_dim("tiny student", self.hidden_size, self.num_attention_heads)


def check_head_dim(what: str, hidden_size: int, num_attention_heads: int) -> None:
    """vLLM's CPU attention has no kernel for heads narrower than 32 (and dies on the first
    request, after /health passed): refuse such a shape when it is specified."""
    head_dim, rest = divmod(hidden_size, num_attention_heads)
    if rest or head_dim < 32:
        from shared.errors import InvalidInput

        raise InvalidInput(
            f"{what}: head_dim = hidden_size / num_attention_heads must be a whole"
            f" number >= 32 (vLLM's CPU attention), got {hidden_size} / {num_attention_heads}"
        )


def stdlib_corpus(limit_bytes: int) -> list[str]:
    """Python source files of the standard library, in a fixed order, up to ``limit_bytes``."""
    root = Path(sysconfig.get_paths()["stdlib"])
    texts: list[str] = []
    total = 0
    for path in sorted(root.glob("*.py")):
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        texts.append(text)
        total += len(text)
        if total >= limit_bytes:
            break
    return texts


def is_built(target: Path, spec: TinySpec = TinySpec()) -> bool:
    marker = target / MARKER
    if not marker.is_file():
        return False
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return info == _marker(spec)


def _marker(spec: TinySpec) -> dict:
    return {"builder_version": BUILDER_VERSION, "spec": asdict(spec)}


def build_tiny_student(target: Path, spec: TinySpec = TinySpec(), *, force: bool = False) -> Path:
    """Build the tiny student into ``target`` unless an identical build is already there."""
    target = Path(target)
    if not force and is_built(target, spec):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        write_tokenizer(
            staging,
            stdlib_corpus(spec.corpus_bytes),
            spec.vocab_size,
            spec.max_position_embeddings,
        )
        _write_model(staging, spec)
        (staging / MARKER).write_text(json.dumps(_marker(spec), indent=2) + "\n")
        swap_into_place(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def swap_into_place(staging: Path, target: Path) -> None:
    """Rename a finished build over ``target``: readers see the old build or the new, never half."""
    if target.exists():
        old = target.with_name(f".{target.name}-old-{os.getpid()}")
        target.rename(old)
        staging.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        try:
            staging.rename(target)
        except OSError:
            # Another builder won the race with an identical build; keep theirs.
            if not (target / MARKER).is_file():
                raise


def write_tokenizer(
    out: Path,
    texts: list[str],
    vocab_size: int,
    model_max_length: int,
    *,
    split_digits: bool = False,
) -> None:
    """Train a byte-level BPE tokenizer on ``texts`` and save it with the chat template.

    ``split_digits`` makes every digit its own token, so a number the model never saw is still
    made of tokens it knows (and copying it from the prompt is learnable)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.pre_tokenizer = (
        pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
        if split_digits
        else byte_level
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS,
        bos_token=EOS,
        pad_token=PAD,
        model_max_length=model_max_length,
        chat_template=CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False,
    )
    fast.save_pretrained(out)


def new_llama(
    out: Path,
    *,
    hidden_size: int,
    intermediate_size: int,
    num_hidden_layers: int,
    num_attention_heads: int,
    num_key_value_heads: int,
    max_position_embeddings: int,
    seed: int,
) -> tuple[Any, Any]:
    """A seeded, randomly initialised fp32 Llama over the tokenizer saved in ``out`` (both the
    tiny student and the pretrained suite student start here)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast.from_pretrained(out)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        torch_dtype="float32",
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def _write_model(out: Path, spec: TinySpec) -> None:
    import torch

    model, _ = new_llama(
        out,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        max_position_embeddings=spec.max_position_embeddings,
        seed=spec.seed,
    )
    with torch.no_grad():
        model.lm_head.weight.normal_(0.0, spec.lm_head_std)
    model.save_pretrained(out, safe_serialization=True)

"""Trainer benchmarks. Ratios are against baselines measured in the same run.

1. ``throughput``: training tokens/s of the service's LoRA loop (services.trainer.loop.train_lora,
   with the service's defaults: gradient clipping, LR schedule, per-step loss logging and lease
   callback) against a bare peft loop (forward, backward, AdamW step; nothing else) on the same
   examples, model, LoRA shape, batch order and precision. Target: ratio >= 0.9. The two are
   interleaved over several repeats and the medians compared, so drift in a shared machine's
   load hits both.
2. ``grouping``: tokens/s of the loop with length-grouped batches (``group_by_length``, the
   default) against today's loop without them (random batches padded to their longest), on the
   same examples, model, seed and threads, interleaved over the repeats. Target: ratio >= 1.5,
   with the final loss (mean per-token loss of the trained adapter over all the examples) within
   5% of the ungrouped run's.
3. ``latency``: seconds from a training trigger (a ``trainer.train`` message) to the promoted
   adapter answering a completion on the student's vLLM server, on a real stack (PostgreSQL,
   Redis, vLLM on the tiny student, student + trainer Celery workers), with the run's phases.

    python bench/bench_trainer.py                       # all three, CPU
    python bench/bench_trainer.py grouping --examples 96 --repeats 2
    python bench/bench_trainer.py throughput --device cuda --scale medium --repeats 5

Examples are Python functions from the standard library's source (task = the docstring's first
line, header = the def line, target = the body), so token lengths vary as real code does.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import statistics
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.enums import Split  # noqa: E402

SCALES = {
    # name: (hidden, intermediate, layers, heads)
    "tiny": None,  # the tiny student itself
    "medium": (768, 2048, 8, 12),  # ~60M parameters with the tiny student's tokenizer
}


def stdlib_pairs(n: int):
    """``n`` (prompt, body) pairs from stdlib functions with a docstring, in a fixed order."""
    from services.trainer.encoding import Pair
    from shared.prompts import generation_prompt

    pairs = []
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        try:
            source = path.read_text(encoding="utf-8")
            tree = ast.parse(source)
        except (SyntaxError, UnicodeDecodeError):
            continue
        lines = source.splitlines()
        for node in tree.body:
            if not isinstance(node, ast.FunctionDef) or not ast.get_docstring(node):
                continue
            doc = ast.get_docstring(node).strip().splitlines()[0]
            header = lines[node.lineno - 1]
            if not header.rstrip().endswith(":") or node.body[0].lineno == node.lineno:
                continue
            body_start = node.body[1].lineno if len(node.body) > 1 else node.body[0].end_lineno + 1
            body = "\n".join(lines[body_start - 1 : node.end_lineno]) + "\n"
            if not body.strip() or len(body) > 1200:
                continue
            pairs.append(Pair(generation_prompt(doc, header), body, len(pairs)))
            if len(pairs) == n:
                return pairs
    return pairs


def build_model(scale: str, out: Path) -> str:
    """The base model: the tiny student, or a seeded random Llama of a larger shape with the tiny
    student's tokenizer (no download needed)."""
    from tests.support.vllm import tiny_student_path

    tiny = tiny_student_path()
    if SCALES[scale] is None:
        return str(tiny)
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    hidden, inter, layers, heads = SCALES[scale]
    tok = AutoTokenizer.from_pretrained(tiny)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=2048,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def bare_loop(config, pairs, base_model: str) -> tuple[float, int]:
    """A bare peft training loop: (seconds, tokens). Same examples, order, shape and precision."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from services.trainer.loop import resolve_precision

    device, dtype = resolve_precision(config)
    tok = AutoTokenizer.from_pretrained(base_model)
    examples = []
    for p in pairs:
        prompt = tok(p.input)["input_ids"]
        target = tok(p.target, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        if len(prompt) + len(target) <= config.max_length:
            examples.append((prompt + target, [-100] * len(prompt) + target))
    torch.manual_seed(config.seed)
    model = AutoModelForCausalLM.from_pretrained(base_model, dtype=dtype).to(device)
    model = get_peft_model(
        model,
        LoraConfig(
            r=config.lora_rank,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=list(config.lora_target_modules),
            task_type="CAUSAL_LM",
        ),
    )
    opt = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=config.learning_rate
    )
    model.train()
    tokens = 0
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for epoch in range(config.epochs):
        gen = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
        order = torch.randperm(len(examples), generator=gen).tolist()
        for i in range(0, len(order), config.batch_size):
            chunk = [examples[j] for j in order[i : i + config.batch_size]]
            ids = torch.nn.utils.rnn.pad_sequence(
                [torch.tensor(c[0]) for c in chunk],
                batch_first=True,
                padding_value=tok.pad_token_id,
            )
            labels = torch.nn.utils.rnn.pad_sequence(
                [torch.tensor(c[1]) for c in chunk], batch_first=True, padding_value=-100
            )
            lengths = torch.tensor([len(c[0]) for c in chunk])
            mask = (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).long()
            loss = model(
                input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device)
            ).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            tokens += sum(len(c[0]) for c in chunk)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, tokens


def throughput(args: argparse.Namespace) -> dict:
    from services.trainer.config import load_config
    from services.trainer.loop import train_lora

    with tempfile.TemporaryDirectory() as tmp:
        base = build_model(args.scale, Path(tmp) / "model")
        pairs = stdlib_pairs(args.examples)
        config = load_config(
            base_model=base,
            adapter_dir=tmp,
            device=args.device,
            epochs=args.epochs,
            batch_size=args.batch_size,
            max_length=512,
            lora_target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
            group_by_length=False,  # the bare loop's batch order: this part measures overhead
        )
        ours, bare = [], []
        for i in range(args.repeats + 1):  # the first round warms caches and is dropped
            out = Path(tmp) / f"out{i}"
            out.mkdir()
            seconds, tokens = bare_loop(config, pairs, base)
            result = train_lora(config, pairs, out, base_model=base, on_step=lambda _info: None)
            assert result.tokens == tokens, (result.tokens, tokens)
            if i:
                bare.append(tokens / seconds)
                ours.append(result.tokens_per_s)
        import torch

        figures = {
            "scale": args.scale,
            "torch_threads": torch.get_num_threads() if result.device == "cpu" else None,
            "device": result.device,
            "dtype": result.dtype,
            "examples": result.examples,
            "steps": result.steps,
            "tokens_per_run": result.tokens,
            "ours_tokens_per_s": round(statistics.median(ours), 1),
            "bare_tokens_per_s": round(statistics.median(bare), 1),
            "ratio": round(statistics.median(ours) / statistics.median(bare), 3),
            "ours_all": [round(x, 1) for x in ours],
            "bare_all": [round(x, 1) for x in bare],
        }
    print(
        f"throughput [{figures['device']} {figures['dtype']}, {args.scale},"
        f" threads {figures['torch_threads']}]: ours"
        f" {figures['ours_tokens_per_s']} tok/s, bare peft {figures['bare_tokens_per_s']} tok/s,"
        f" ratio {figures['ratio']} (target >= 0.9)"
    )
    return figures


def final_loss(config, pairs, base_model: str, adapter_dir: Path) -> float:
    """Mean per-target-token loss of a trained adapter over ``pairs``, one example at a time (no
    padding, so both runs are scored alike)."""
    import torch
    from peft import PeftModel

    from services.trainer.encoding import encode_pairs
    from services.trainer.loop import load_base_model, load_tokenizer

    tok = load_tokenizer(base_model)
    encoded = encode_pairs(tok, pairs, config.max_length).examples
    model = PeftModel.from_pretrained(
        load_base_model(base_model, "cpu", torch.float32), adapter_dir
    )
    model.eval()
    total = weight = 0.0
    with torch.no_grad():
        for e in encoded:
            ids = torch.tensor([e.input_ids])
            loss = model(input_ids=ids, labels=torch.tensor([e.labels])).loss
            total += float(loss) * e.target_tokens
            weight += e.target_tokens
    return total / weight


def _padded_tokens(config, pairs, base_model: str) -> int:
    """Positions the forward passes compute over all epochs: each batch padded to its longest."""
    from services.trainer.encoding import encode_pairs
    from services.trainer.loop import batches, load_tokenizer

    encoded = encode_pairs(load_tokenizer(base_model), pairs, config.max_length).examples
    lengths = [len(e.input_ids) for e in encoded]
    total = 0
    for epoch in range(config.epochs):
        order = batches(
            len(lengths),
            config.batch_size,
            epoch,
            config.seed,
            lengths if config.group_by_length else None,
        )
        total += sum(len(b) * max(lengths[i] for i in b) for b in order)
    return total


def grouping(args: argparse.Namespace) -> dict:
    from services.trainer.config import load_config
    from services.trainer.loop import cpu_threads, train_lora

    with tempfile.TemporaryDirectory() as tmp:
        base = build_model(args.scale, Path(tmp) / "model")
        pairs = stdlib_pairs(args.examples)
        common = dict(
            base_model=base,
            adapter_dir=tmp,
            device=args.device,
            epochs=args.epochs,
            batch_size=args.batch_size,
            max_length=512,
            lora_target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
        )
        today = load_config(**common, group_by_length=False)
        # Both runs on the same thread count, fixed now (the default follows the host's load).
        threads = cpu_threads(today)
        today = load_config(**common, group_by_length=False, cpu_threads=threads)
        grouped = load_config(**common, group_by_length=True, cpu_threads=threads)
        rates: dict[str, list[float]] = {"today": [], "grouped": []}
        last: dict[str, tuple] = {}
        for i in range(args.repeats + 1):  # the first round warms caches and is dropped
            for name, config in (("today", today), ("grouped", grouped)):
                out = Path(tmp) / f"{name}{i}"
                out.mkdir()
                result = train_lora(config, pairs, out, base_model=base)
                if i:
                    rates[name].append(result.tokens_per_s)
                last[name] = (result, out)
        losses = {name: final_loss(today, pairs, base, out) for name, (_, out) in last.items()}
        # Each round runs both back to back: the ratio within a round shares the host's load of
        # that moment (a shared machine's load swings more than the effect between rounds).
        pairs_ratio = [g / t for g, t in zip(rates["grouped"], rates["today"], strict=True)]
        ratio = statistics.median(pairs_ratio)
        padded = {
            name: _padded_tokens(config, pairs, base)
            for name, config in (("today", today), ("grouped", grouped))
        }
        delta = (losses["grouped"] - losses["today"]) / losses["today"]
        figures = {
            "scale": args.scale,
            "device": last["today"][0].device,
            "torch_threads": threads,
            "examples": last["today"][0].examples,
            "steps": last["today"][0].steps,
            "tokens_per_run": last["today"][0].tokens,
            "today_tokens_per_s": round(statistics.median(rates["today"]), 1),
            "grouped_tokens_per_s": round(statistics.median(rates["grouped"]), 1),
            "ratio": round(ratio, 3),
            "ratio_per_round": [round(r, 3) for r in pairs_ratio],
            # Deterministic: tokens the forward pass computes (padding included) per run.
            "padded_tokens_today": padded["today"],
            "padded_tokens_grouped": padded["grouped"],
            "padding_ratio": round(padded["today"] / padded["grouped"], 3),
            "final_loss_today": round(losses["today"], 5),
            "final_loss_grouped": round(losses["grouped"], 5),
            "loss_delta": round(delta, 4),
            "today_all": [round(x, 1) for x in rates["today"]],
            "grouped_all": [round(x, 1) for x in rates["grouped"]],
        }
    print(
        f"grouping [{figures['device']}, {args.scale}, threads {threads}]: length-grouped"
        f" {figures['grouped_tokens_per_s']} tok/s, today's loop {figures['today_tokens_per_s']}"
        f" tok/s, ratio {figures['ratio']} (target >= 1.5; per round {figures['ratio_per_round']},"
        f" padded tokens {figures['padding_ratio']}x fewer); final loss"
        f" {figures['final_loss_grouped']} vs {figures['final_loss_today']}"
        f" ({100 * delta:+.2f}%, target within 5%)"
    )
    return figures


def latency(args: argparse.Namespace) -> dict:
    """Trigger -> promoted adapter answering, on a private stack (its own PostgreSQL schema and
    Redis prefix, as the tests make them), with the run's phases."""
    from tests.support import env as stack_env

    stack_env.apply()  # before anything reads settings
    import httpx
    import redis
    from sqlalchemy import create_engine, text

    from shared import db as shared_db
    from shared.migrate import upgrade
    from shared.models import Adapter, TrainingRun
    from shared.queues import TRAINER_TRAIN
    from shared.registry import get_active
    from shared.schemas.messages import TrainRequest
    from tests.support.vllm import VllmServer, tiny_student_path
    from tests.support.workers import WorkerPool
    from tests.trainer.support import SET_A, as_env, fast_settings, seed

    admin = create_engine(stack_env.PG_BASE, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{stack_env.PG_SCHEMA}"'))
    tmp = Path(tempfile.mkdtemp(prefix="bench-trainer-"))
    os.environ["PERSD_DATA_DIR"] = str(tmp / "data")
    shared_db.reset_caches()
    server = VllmServer(tiny_student_path(), data_dir=tmp / "vllm", log_dir=tmp)
    pool = WorkerPool()
    try:
        upgrade(stack_env.DATABASE_URL)
        server.start()
        env = server.env | as_env(fast_settings(tmp / "adapters"))
        pool.get("student", env=env)
        pool.restart("trainer", env=env)
        seed(SET_A)
        seed(SET_A[:5], Split.HELDOUT, tag="-heldout")

        started = time.perf_counter()
        sent = TRAINER_TRAIN.send(TrainRequest(trigger="manual"))
        answered_s = None
        with httpx.Client(timeout=30) as client:
            while time.perf_counter() - started < 600:
                with shared_db.session_scope() as session:
                    current = get_active(session)
                    name = current.name if current else None
                if name is not None:
                    reply = client.post(
                        f"{server.url}/v1/completions",
                        json={"model": name, "prompt": "def f(x):\n", "max_tokens": 4},
                    )
                    if reply.status_code == 200:
                        answered_s = time.perf_counter() - started
                        break
                time.sleep(0.05)
        result = sent.get(timeout=600)
        with shared_db.session_scope() as session:
            run = session.get(TrainingRun, result.run_id)
            adapter = session.get(Adapter, run.adapter_id)
            timings = dict((adapter.metrics or {}).get("timings", {}))
            run_status, examples, steps = run.status.value, run.examples_used, len(run.loss_curve)
        figures = {
            "trigger_to_answer_s": round(answered_s, 2) if answered_s else None,
            "run_status": run_status,
            "examples": examples,
            "steps": steps,
            "phases": {
                "training_s": timings.get("train_s"),
                "gate_s": timings.get("gate_s"),
                "promotion_s": timings.get("promote_s"),
            },
        }
    finally:
        pool.stop_all()
        server.stop()
        shared_db.reset_caches()
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{stack_env.PG_SCHEMA}" CASCADE'))
        admin.dispose()
        r = redis.Redis.from_url(stack_env.REDIS_URL)
        keys = list(r.scan_iter(match=f"{stack_env.REDIS_PREFIX}*", count=1000))
        if keys:
            r.delete(*keys)
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"latency: trigger -> promoted adapter answering {figures['trigger_to_answer_s']} s"
        f" ({examples} examples, {steps} steps; training {timings.get('train_s')} s,"
        f" gate {timings.get('gate_s')} s, promotion {timings.get('promote_s')} s)"
    )
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "part", nargs="?", choices=["throughput", "grouping", "latency", "all"], default="all"
    )
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--scale", choices=sorted(SCALES), default="tiny")
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    figures = {}
    if args.part in ("throughput", "all"):
        figures["throughput"] = throughput(args)
    if args.part in ("grouping", "all"):
        figures["grouping"] = grouping(args)
    if args.part in ("latency", "all"):
        figures["latency"] = latency(args)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())

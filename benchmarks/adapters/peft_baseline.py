"""The benchmark's SST-2 LoRA case through peft + transformers' Trainer, for a side-by-side.

Same data (tunesmith's readers and label order), same model (the embedded MiniLM folder), same
LoRA config (r, alpha, dropout, target modules; the classifier trains too: PEFT's SEQ_CLS task
type), and the same optimisation (lr, epochs or max_steps, batch, weight decay, linear schedule
with the same warmup ratio, clipping, seed, length-grouped batches) as the tunesmith case
``sst2/lora`` -- all read from that case's recipe. Tokenised by the tokenizer itself with the same
max_length, padded per batch by ``DataCollatorWithPadding``; no evaluation during training (so
the final model is scored, where tunesmith keeps the best of its per-epoch dev evaluations).

    python benchmarks/adapters/peft_baseline.py --json-out /tmp/peft.json [--quick]

run.py runs it as the case ``sst2/peft_lora`` in its own process (peak RSS is this run's).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import peft
import torch
from cases import PEFT_CASE, Overrides, add_override_args, build_recipe
from measure import checkpoint_bytes, dir_bytes, peak_gpu_mb, peak_rss_mb
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
    set_seed,
)

from tunesmith.data.pipeline import build_vocab, load_raw_splits
from tunesmith.models import count_parameters, resolve_model

ROOT = Path(__file__).resolve().parents[2]


def encode(records: list[dict], tokenizer, vocab, data_cfg) -> list[dict]:
    """Tokenise (truncate to max_length, no padding) and attach label ids."""
    texts = [r[data_cfg.text_key] for r in records]
    pairs = [r[data_cfg.text_pair_key] for r in records] if data_cfg.text_pair_key else None
    enc = tokenizer(texts, pairs, truncation=True, max_length=data_cfg.max_length)
    return [
        {**{k: enc[k][i] for k in enc.keys()}, "labels": vocab.encode(r[data_cfg.label_key])}
        for i, r in enumerate(records)
    ]


def training_args(recipe, out_dir: Path) -> TrainingArguments:
    o, tr = recipe.optim, recipe.train
    return TrainingArguments(
        output_dir=str(out_dir),
        per_device_train_batch_size=tr.batch_size,
        per_device_eval_batch_size=tr.eval_batch_size,
        num_train_epochs=tr.epochs,
        max_steps=tr.max_steps or -1,
        learning_rate=o.lr,
        weight_decay=o.weight_decay,
        adam_beta1=o.betas[0],
        adam_beta2=o.betas[1],
        adam_epsilon=o.eps,
        lr_scheduler_type=o.schedule,
        warmup_steps=o.warmup_ratio,  # a float in [0, 1) is a fraction of the steps
        max_grad_norm=o.max_grad_norm,
        gradient_accumulation_steps=o.grad_accum,
        optim="adamw_torch",
        seed=recipe.seed,
        train_sampling_strategy="group_by_length" if tr.length_grouping else "random",
        eval_strategy="no",
        save_strategy="no",
        logging_steps=tr.log_every * 5,
        report_to="none",
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
    )


def run(runs_dir: Path, quick: bool, seed: int | None, over: Overrides) -> dict:
    recipe = build_recipe(PEFT_CASE, quick, seed, over)
    out_dir = runs_dir / PEFT_CASE / f"seed{recipe.seed}"
    shutil.rmtree(out_dir, ignore_errors=True)
    t0 = time.perf_counter()
    raw = load_raw_splits(recipe)
    vocab = build_vocab(recipe, raw)
    model_dir = resolve_model(recipe.model)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    train_set, test_set = (encode(raw[s], tokenizer, vocab, recipe.data) for s in ("train", "test"))
    set_seed(recipe.seed)
    base = AutoModelForSequenceClassification.from_pretrained(
        model_dir, num_labels=len(vocab), id2label=vocab.id2label, label2id=vocab.label2id
    )
    _, lora = recipe.adapter_settings()[1:]
    config = peft.LoraConfig(
        task_type=peft.TaskType.SEQ_CLS,
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.targets),
    )
    model = peft.get_peft_model(base, config)
    model.print_trainable_parameters()
    trainable, total = count_parameters(model)
    trainer = Trainer(
        model=model,
        args=training_args(recipe, out_dir),
        train_dataset=train_set,
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
    )
    t_train = time.perf_counter()
    trainer.train()
    train_wall = time.perf_counter() - t_train
    pred = trainer.predict(test_set)
    accuracy = float(np.mean(pred.predictions.argmax(-1) == pred.label_ids))
    model.save_pretrained(str(out_dir / "best"))
    wall = time.perf_counter() - t0
    return {
        "dataset": "sst2",
        "method": "peft_lora",
        "seed": recipe.seed,
        "model": recipe.model,
        "adapter": recipe.adapter,
        "lr": recipe.optim.lr,
        "steps": trainer.state.global_step,
        "trainable_params": trainable,
        "total_params": total,
        "trainable_fraction": round(trainable / total, 6),
        "trainable_pct": round(100 * trainable / total, 4),
        "checkpoint_bytes": checkpoint_bytes(out_dir / "best"),
        "best_dir_bytes": dir_bytes(out_dir / "best"),
        "wall_s": round(wall, 1),
        "train_wall_s": round(train_wall, 1),
        "peak_rss_mb": peak_rss_mb(),
        "peak_gpu_mb": peak_gpu_mb(),
        "accuracy": round(accuracy, 4),
        "split": "test",
        "versions": {"peft": peft.__version__, "torch": torch.__version__},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json-out", required=True, help="where the result row is written")
    p.add_argument("--runs-dir", default=str(ROOT / "runs" / "bench_adapters"))
    p.add_argument("--quick", action="store_true", help="smoke test: 64 train, 4 steps")
    p.add_argument("--seed", type=int, help="the seed (the LoRA case's by default)")
    add_override_args(p)
    args = p.parse_args()
    result = run(Path(args.runs_dir), args.quick, args.seed, Overrides.from_args(args))
    Path(args.json_out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

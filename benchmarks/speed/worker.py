"""One timed training run of a speed case, tunesmith or the HF Trainer (+ PEFT), in this process.

    python benchmarks/speed/worker.py CASE IMPL --steps N --json-out out.json

IMPL is ``tunesmith`` (its recipe defaults: length-grouped batches), ``tunesmith_packed``
(causal LM: ``data.packing``, rows of max_length tokens, no cross-example attention), ``trainer`` (transformers'
Trainer with its defaults: random batches, padded per batch) or ``trainer_grouped`` (Trainer with
``group_by_length``). Both sides get the *same tokenised examples* (tunesmith's encoders), model
files, batch size, max length, precision (fp32), optimiser (AdamW, same LR / schedule / clipping),
seed and number of steps. Timing is taken the same way for both: the model class's ``forward`` is
wrapped to record the start time and the non-pad tokens (attention_mask sum) of every training
forward, so a step is "forward start to next forward start" (forward + backward + optimiser +
data). The first WARMUP steps are left out. Peak RSS is this process's (one run per process).
"""

from __future__ import annotations

import argparse
import functools
import json
import resource
import shutil
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WARMUP = 3

LORA_CLS = {"r": 8, "alpha": 16, "dropout": 0.0, "targets": ["query", "value"]}
LORA_LM = {
    "r": 16,
    "alpha": 32,
    "dropout": 0.0,
    "targets": ["q_proj", "k_proj", "v_proj", "o_proj"],
}
SST2 = {
    "train": {"path": "sst2_sentences/train.txt", "format": "label_text"},
    "test": {"path": "sst2_sentences/test.txt", "format": "label_text"},
    "max_length": 64,
    "limit": {"test": 1000},
}
ALPACA = {
    "train": {"path": "alpaca_2k/alpaca_small.json", "format": "json"},
    "split": {"dev": 0.05},
    "limit": {"dev": 64},
    "template": "chat",
    "mask_prompt": True,
    "max_length": 256,
}
CASES = {
    "minilm_full": {
        "model": "minilm",
        "task": "sequence_classification",
        "data": SST2,
        "adapter": None,
        "lr": 1e-4,
        "batch": 32,
        "eval_split": "test",
    },
    "minilm_lora": {
        "model": "minilm",
        "task": "sequence_classification",
        "data": SST2,
        "adapter": LORA_CLS,
        "lr": 5e-4,
        "batch": 32,
        "eval_split": "test",
    },
    "smollm2_lora": {
        "model": "smollm2",
        "task": "causal_lm",
        "data": ALPACA,
        "adapter": LORA_LM,
        "lr": 5e-4,
        "batch": 8,
        "eval_split": "dev",
    },
}


def recipe_for(case: str, steps: int, run_dir: Path, packing: bool = False):
    from tunesmith.config import parse_recipe

    c = CASES[case]
    data = {**c["data"], "packing": True} if packing else dict(c["data"])
    return parse_recipe(
        {
            "model": c["model"],
            "task": c["task"],
            "output_dir": str(run_dir),
            "seed": 13,
            "data": data,
            "adapter": {"type": "lora", **c["adapter"]} if c["adapter"] else None,
            "optim": {"lr": c["lr"], "weight_decay": 0.01, "warmup_steps": 2, "max_grad_norm": 1.0},
            "train": {
                "batch_size": c["batch"],
                "eval_batch_size": 64 if c["task"] != "causal_lm" else 8,
                "max_steps": steps,
                "log_every": 1,
                "progress": False,
                "tensorboard": False,
                "precision": "fp32",  # pinned: results stay comparable (auto may pick bf16)
            },
        }
    )


class StepClock:
    """Wraps ``cls.forward``: one (start time, non-pad tokens) record per training forward."""

    def __init__(self, cls):
        self.records: list[tuple[float, int]] = []
        self.cls, self.orig = cls, cls.forward
        clock = self

        @functools.wraps(self.orig)
        def forward(module, *args, **kwargs):
            if module.training:
                mask = kwargs.get("attention_mask")
                n = int(mask.sum()) if mask is not None else int(kwargs["input_ids"].numel())
                clock.records.append((time.perf_counter(), n))
            return clock.orig(module, *args, **kwargs)

        cls.forward = forward

    def stop(self) -> float:
        self.end = time.perf_counter()
        self.cls.forward = self.orig
        return self.end

    def summary(self) -> dict:
        # steps WARMUP .. N-2: each from its forward start to the next one (the last step's end
        # is not observable the same way on both sides: tunesmith saves and evaluates after it)
        recs = self.records[WARMUP:]
        times = [t for t, _ in recs]
        step_s = [b - a for a, b in zip(times, times[1:], strict=False)]
        tokens = sum(n for _, n in recs[:-1])
        span = times[-1] - times[0]
        step_s.sort()
        return {
            "timed_steps": len(recs) - 1,
            "tokens_per_s": round(tokens / span, 1),
            "median_step_s": round(step_s[len(step_s) // 2], 4),
            "nonpad_tokens": tokens,
        }


def model_class(case: str):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    from tunesmith.models import resolve_model

    c = CASES[case]
    auto = AutoModelForCausalLM if c["task"] == "causal_lm" else AutoModelForSequenceClassification
    config = AutoConfig.from_pretrained(resolve_model(c["model"]))
    return auto._model_mapping[type(config)]


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def run_tunesmith(case: str, steps: int, run_dir: Path, packing: bool = False) -> dict:
    from accelerate import Accelerator

    from tunesmith.data.collate import Collator
    from tunesmith.data.pipeline import build_datasets
    from tunesmith.predict import load_run
    from tunesmith.train.evaluation import evaluate
    from tunesmith.train.loop import train

    recipe = recipe_for(case, steps, run_dir, packing)
    clock = StepClock(model_class(case))
    summary = train(recipe, run_dir)
    clock.stop()
    rss_train = peak_rss_mb()
    losses = [
        json.loads(line)
        for line in (run_dir / "metrics.jsonl").read_text().splitlines()
        if '"split": "train"' in line
    ]
    loss_by_step = {r["step"]: round(r["task_loss"], 4) for r in losses}
    _, model, tokenizer, labels = load_run(run_dir)
    data = build_datasets(recipe, tokenizer, saved_labels=labels)
    split = CASES[case]["eval_split"]
    examples = getattr(data, split)
    model.eval()
    t0 = time.perf_counter()
    metrics = evaluate(
        model,
        examples,
        Collator(tokenizer.pad_token_id),
        recipe.task,
        data.vocab,
        Accelerator(),
        recipe.train.eval_batch_size,
    )
    eval_s = time.perf_counter() - t0
    return {
        **clock.summary(),
        "loss_by_step": loss_by_step,
        "steps": summary["steps"],
        "peak_rss_train_mb": rss_train,
        "eval_examples_per_s": round(len(examples) / eval_s, 1),
        "eval": metrics,
    }


def run_trainer(case: str, steps: int, run_dir: Path, grouped: bool) -> dict:
    import numpy as np
    import peft
    from transformers import (
        DataCollatorForSeq2Seq,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    from tunesmith.data.pipeline import build_datasets
    from tunesmith.models import load_model, load_tokenizer

    c = CASES[case]
    recipe = recipe_for(case, steps, run_dir)
    tokenizer = load_tokenizer(c["model"])
    data = build_datasets(recipe, tokenizer)
    train_set = data.train
    eval_set = getattr(data, c["eval_split"])
    set_seed(13)
    kwargs = {}
    if data.vocab is not None:
        kwargs = dict(
            num_labels=len(data.vocab), id2label=data.vocab.id2label, label2id=data.vocab.label2id
        )
    model = load_model(c["model"], c["task"], init_seed=13, **kwargs)
    if c["adapter"]:
        a = c["adapter"]
        task_type = peft.TaskType.CAUSAL_LM if c["task"] == "causal_lm" else peft.TaskType.SEQ_CLS
        model = peft.get_peft_model(
            model,
            peft.LoraConfig(
                task_type=task_type,
                r=a["r"],
                lora_alpha=a["alpha"],
                lora_dropout=a["dropout"],
                target_modules=list(a["targets"]),
            ),
        )
    if c["task"] == "causal_lm":
        collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    else:
        collator = DataCollatorWithPadding(tokenizer)
    args = TrainingArguments(
        output_dir=str(run_dir),
        per_device_train_batch_size=c["batch"],
        per_device_eval_batch_size=recipe.train.eval_batch_size,
        max_steps=steps,
        learning_rate=c["lr"],
        weight_decay=0.01,
        warmup_steps=2,
        max_grad_norm=1.0,
        lr_scheduler_type="linear",
        optim="adamw_torch",
        seed=13,
        train_sampling_strategy="group_by_length" if grouped else "random",
        eval_strategy="no",
        save_strategy="no",
        logging_steps=1,
        report_to="none",
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
    )
    clock = StepClock(model_class(case))
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_set,
        data_collator=collator,
        processing_class=tokenizer,
    )
    trainer.train()
    clock.stop()
    rss_train = peak_rss_mb()
    loss_by_step = {
        h["step"]: round(h["loss"], 4) for h in trainer.state.log_history if "loss" in h
    }
    t0 = time.perf_counter()
    if c["task"] == "causal_lm":  # loss only (predict() would gather every logit: GBs)
        metrics = {"loss": round(float(trainer.evaluate(eval_set)["eval_loss"]), 4)}
    else:
        pred = trainer.predict(eval_set)
        metrics = {"accuracy": float(np.mean(pred.predictions.argmax(-1) == pred.label_ids))}
    eval_s = time.perf_counter() - t0
    return {
        **clock.summary(),
        "loss_by_step": loss_by_step,
        "steps": trainer.state.global_step,
        "peak_rss_train_mb": rss_train,
        "eval_examples_per_s": round(len(eval_set) / eval_s, 1),
        "eval": metrics,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("case", choices=sorted(CASES))
    p.add_argument("impl", choices=["tunesmith", "tunesmith_packed", "trainer", "trainer_grouped"])
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--json-out", required=True)
    p.add_argument("--runs-dir", default=str(ROOT / "runs" / "bench_speed"))
    args = p.parse_args()
    run_dir = Path(args.runs_dir) / f"{args.case}-{args.impl}"
    shutil.rmtree(run_dir, ignore_errors=True)
    if args.impl.startswith("tunesmith"):
        out = run_tunesmith(args.case, args.steps, run_dir, args.impl == "tunesmith_packed")
    else:
        out = run_trainer(args.case, args.steps, run_dir, args.impl == "trainer_grouped")
    out.update(
        case=args.case, impl=args.impl, peak_rss_mb=peak_rss_mb(), threads=torch.get_num_threads()
    )
    Path(args.json_out).write_text(json.dumps(out, indent=2))
    print(json.dumps(out), file=sys.stderr)


if __name__ == "__main__":
    main()

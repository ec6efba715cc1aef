"""One timed training run of the scale benchmark, tunesmith or transformers' Trainer (+ PEFT), in
this (fresh) process; run.py starts one per run so every peak RSS is that run's alone.

    python benchmarks/scale/scale_worker.py CASE IMPL CONFIG --steps N --threads T --json-out out.json

CONFIG names the precision and memory settings (see :func:`parse_config`): ``fp32``, ``bf16``
(autocast over fp32 weights), ``bf16base`` (frozen weights stored in bf16, plus bf16 autocast),
each optionally followed by ``+ckpt`` (gradient checkpointing), ``+chunk`` (chunked LM loss,
tunesmith only) and ``+nopack_attn`` (tunesmith only: ``model.attn_implementation: sdpa``, the
block-diagonal mask over whole rows instead of its default per-example attention for packed rows,
:mod:`tunesmith.packedattn`). Both sides train on the *same packed rows* (tunesmith's encoder and packer:
alpaca_2k, alpaca prompt template, loss on responses, rows of max_length tokens, position_ids
restarting per example, no attention mask), with the same batch, steps, AdamW, linear schedule
with warmup, clipping and seed.

Measured the same way on both sides, by hooks that neither implementation knows about:
- a global optimizer-step hook stamps the end of every optimiser step; tokens per step are the
  token positions the input embedding sees in training mode. tokens_per_s = tokens of steps
  2..N / (end of step N - end of step 1): steady state, step 1 (lazy init, allocator warm-up)
  excluded.
- peak_rss_mb is VmHWM (/proc/self/status) read at the end of the last optimiser step (what
  follows, tunesmith's final save, is left out); peak_rss_steady_mb is the same after the high
  water mark was reset (/proc/self/clear_refs) at the end of step 1, i.e. the training peak
  without the model-loading transient; peak_rss_process_mb is VmHWM when the process ends.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

LORA = {"r": 16, "alpha": 32, "dropout": 0.0, "targets": ["q_proj", "k_proj", "v_proj", "o_proj"]}
CASES = {
    "smollm2_lora": {"model": "smollm2", "adapter": LORA, "lr": 5e-4},
    "smollm2_full": {"model": "smollm2", "adapter": None, "lr": 5e-5},
    "gemma3_lora": {"model": "gemma3", "adapter": LORA, "lr": 5e-4},
}
DATA = {
    "train": {"path": "alpaca_2k/alpaca_small.json", "format": "json"},
    "template": "alpaca",  # Gemma-3-270m is a base model without a chat template
    "response_key": "output",
    "mask_prompt": True,
    "packing": True,
}
SEED = 13
WARMUP_STEPS = 2


def parse_config(name: str) -> dict:
    """``bf16base+ckpt+chunk`` -> precision / frozen_dtype / grad_ckpt / chunked_loss /
    packed_attention."""
    base, *flags = name.split("+")
    if base not in ("fp32", "bf16", "bf16base") or set(flags) - {"ckpt", "chunk", "nopack_attn"}:
        raise ValueError(
            f"unknown config {name!r}: fp32|bf16|bf16base[+ckpt][+chunk][+nopack_attn]"
        )
    return {
        "precision": "fp32" if base == "fp32" else "bf16",
        "frozen_dtype": "bf16" if base == "bf16base" else "fp32",
        "grad_ckpt": "ckpt" in flags,
        "chunked_loss": "chunk" in flags,
        "packed_attention": "nopack_attn" not in flags,
    }


def tunesmith_only(cfg: dict) -> bool:
    """Settings the Trainer has no counterpart for (the chunked loss, the choice of attention:
    the Trainer always runs the block-diagonal mask)."""
    return cfg["chunked_loss"] or not cfg["packed_attention"]


def recipe_dict(case: str, cfg: dict, a: argparse.Namespace, run_dir: Path) -> dict:
    """The tunesmith recipe; keys at their defaults are left out (so the harness also runs on
    trees that predate them: --quick with fp32/bf16 configs)."""
    c = CASES[case]
    train: dict = {
        "batch_size": a.batch,
        "max_steps": a.steps,
        "log_every": 1,
        "progress": False,
        "tensorboard": False,
        "length_grouping": False,  # packed rows are all ~max_length
        "precision": cfg["precision"],
    }
    if cfg["grad_ckpt"]:
        train["gradient_checkpointing"] = True
    if cfg["chunked_loss"]:
        train["loss_chunk_tokens"] = a.chunk_tokens
    model: dict = {"name": c["model"]}
    if cfg["frozen_dtype"] == "bf16":
        model["dtype"] = "bf16"
    if not cfg.get("packed_attention", True):
        model["attn_implementation"] = "sdpa"  # the block-diagonal mask over whole rows
    return {
        "model": model if len(model) > 1 else c["model"],
        "task": "causal_lm",
        "output_dir": str(run_dir),
        "seed": SEED,
        "data": {**DATA, "max_length": a.max_length, "limit": {"train": a.limit}},
        "adapter": {"type": "lora", **c["adapter"]} if c["adapter"] else None,
        "optim": {
            "lr": c["lr"],
            "weight_decay": 0.0,
            "schedule": "linear",
            "warmup_steps": WARMUP_STEPS,
            "max_grad_norm": 1.0,
        },
        "train": train,
    }


def vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def reset_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class Probe:
    """Global hooks: optimizer-step end times, tokens per step, peak RSS (see module doc)."""

    def __init__(self, steps: int):
        from torch.optim.optimizer import register_optimizer_step_post_hook

        self.steps, self.ends, self.tokens, self.pending = steps, [], [], 0
        self.peak_rss_mb = self.peak_rss_steady_mb = None
        self.hwm_reset, self.peak_rss_first_mb, self.rss_at_reset_mb = False, None, None
        self.handle = register_optimizer_step_post_hook(self._on_step)

    def watch(self) -> None:
        """Count the token positions every training-mode embedding lookup sees (a global hook:
        it needs no handle on the model, which tunesmith builds inside train())."""
        import torch

        def count(module, args):
            if module.training and isinstance(module, torch.nn.Embedding) and args:
                self.pending += int(args[0].numel())

        self.hook = torch.nn.modules.module.register_module_forward_pre_hook(count)

    def _on_step(self, optimizer, args, kwargs) -> None:
        self.ends.append(time.perf_counter())
        self.tokens.append(self.pending)
        self.pending = 0
        if len(self.ends) == 1:
            self.peak_rss_first_mb = vm_hwm_mb()
            self.hwm_reset = reset_hwm()
            self.rss_at_reset_mb = vm_hwm_mb()
        if len(self.ends) == self.steps:
            now = vm_hwm_mb()  # since the reset, or (reset refused) since the start
            self.peak_rss_steady_mb = now if self.hwm_reset else None
            self.peak_rss_mb = max(self.peak_rss_first_mb, now)

    def summary(self) -> dict:
        steady = self.ends[-1] - self.ends[0]
        step_s = [b - a for a, b in zip(self.ends, self.ends[1:], strict=False)]
        return {
            "steps_done": len(self.ends),
            "tokens_per_step": self.tokens[1] if len(self.tokens) > 1 else self.tokens[0],
            "tokens_per_s": round(sum(self.tokens[1:]) / steady, 2) if steady > 0 else None,
            "step_s": [round(s, 3) for s in step_s],
            "peak_rss_mb": self.peak_rss_mb,
            "peak_rss_steady_mb": self.peak_rss_steady_mb,
            "peak_rss_step1_mb": self.peak_rss_first_mb,
            "rss_at_reset_mb": self.rss_at_reset_mb if self.hwm_reset else None,
        }


def flop_params(case: str) -> dict:
    """Parameters that multiply activations, split into trainable and frozen, counted on the
    case's model built on the meta device (the same numbers for both implementations).

    Embedding lookups are left out; the LM head is counted (also when tied to the embedding:
    stored once, multiplied every token). LoRA's trainable count is r x (in + out) per targeted
    linear. MFU's model FLOPs per token = 6 N_trainable + 4 N_frozen (forward 2N for all weights;
    backward 2N input gradients for all, plus 2N weight gradients for trainable ones only);
    attention-score FLOPs and gradient-checkpointing recomputation are not counted."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from tunesmith.models import resolve_model

    c = CASES[case]
    config = AutoConfig.from_pretrained(resolve_model(c["model"]))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return count_flop_params(model, c["adapter"])


def count_flop_params(model, adapter: dict | None) -> dict:
    """:func:`flop_params` on a built model; ``adapter``: the case's LoRA settings or None."""
    import torch

    head = model.get_output_embeddings().weight
    total, lora = 0, 0
    for name, p in model.named_parameters():  # shared (tied) weights are listed once
        if name.endswith("embed_tokens.weight") and p is not head:
            continue
        total += p.numel()
    for name, m in model.named_modules():
        if adapter and isinstance(m, torch.nn.Linear) and name.split(".")[-1] in adapter["targets"]:
            lora += adapter["r"] * (m.in_features + m.out_features)
    trainable, frozen = (lora, total) if adapter else (total, 0)
    return {
        "n_trainable": trainable,
        "n_frozen": frozen,
        "flops_per_token": 6 * trainable + 4 * frozen,
    }


def train_losses_tunesmith(run_dir: Path) -> dict:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["task_loss"] for r in rows if r.get("split") == "train"}


def run_tunesmith(case: str, cfg: dict, a: argparse.Namespace, run_dir: Path) -> dict:
    from tunesmith.config import parse_recipe
    from tunesmith.train import loop

    recipe = parse_recipe(recipe_dict(case, cfg, a, run_dir))
    probe = Probe(a.steps)
    probe.watch()
    summary = loop.train(recipe, run_dir)
    out = {**probe.summary(), "loss_by_step": train_losses_tunesmith(run_dir)}
    keys = (
        "precision",
        "precision_reason",
        "state_bytes_per_rank",
        "attention",
        "attention_kernels",
    )
    for key in keys:
        if key in summary:
            out[f"summary_{key}"] = summary[key]
    return out


def packed_rows(case: str, a: argparse.Namespace, run_dir: Path, tokenizer) -> list:
    """tunesmith's packed training rows: what the tunesmith side trains on."""
    from tunesmith.config import parse_recipe
    from tunesmith.data.pipeline import build_datasets

    recipe = parse_recipe(recipe_dict(case, parse_config("fp32"), a, run_dir))  # data only
    keys = ("input_ids", "labels", "position_ids")
    return [{k: row[k] for k in keys} for row in build_datasets(recipe, tokenizer).train]


def collate_packed(rows: list[dict]) -> dict:
    """Stack packed rows (right-padded with -100 labels when a row is short); no attention mask,
    as tunesmith passes none for packed rows: position_ids resets keep examples apart."""
    import torch

    n = max(len(r["input_ids"]) for r in rows)

    def pad(key: str, value: int):
        return torch.tensor([r[key] + [value] * (n - len(r[key])) for r in rows])

    return {"input_ids": pad("input_ids", 0), "labels": pad("labels", -100),
            "position_ids": pad("position_ids", 0)}  # fmt: skip


def _checkpointing_args(on: bool) -> dict:
    """transformers 5.x renamed gradient_checkpointing to activation_checkpointing."""
    import inspect

    from transformers import TrainingArguments

    new = "activation_checkpointing" in inspect.signature(TrainingArguments).parameters
    name = "activation_checkpointing" if new else "gradient_checkpointing"
    return {name: on, f"{name}_kwargs": {"use_reentrant": False} if on else None}


def run_trainer(case: str, cfg: dict, a: argparse.Namespace, run_dir: Path) -> dict:
    import peft
    import torch
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments, set_seed

    from tunesmith.models import load_tokenizer, resolve_model

    c = CASES[case]
    tokenizer = load_tokenizer(c["model"])
    rows = packed_rows(case, a, run_dir, tokenizer)
    set_seed(SEED)
    dtype = torch.bfloat16 if cfg["frozen_dtype"] == "bf16" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(resolve_model(c["model"]), dtype=dtype)
    if c["adapter"]:  # PEFT keeps the adapter weights fp32 (autocast_adapter_dtype)
        ad = c["adapter"]
        lora = peft.LoraConfig(task_type=peft.TaskType.CAUSAL_LM, r=ad["r"], lora_alpha=ad["alpha"],
                               lora_dropout=ad["dropout"], target_modules=list(ad["targets"]))  # fmt: skip
        model = peft.get_peft_model(model, lora)
    args = TrainingArguments(
        output_dir=str(run_dir),
        per_device_train_batch_size=a.batch,
        max_steps=a.steps,
        learning_rate=c["lr"],
        weight_decay=0.0,
        warmup_steps=WARMUP_STEPS,
        max_grad_norm=1.0,
        lr_scheduler_type="linear",
        optim="adamw_torch",
        seed=SEED,
        bf16=cfg["precision"] == "bf16",
        **_checkpointing_args(cfg["grad_ckpt"]),
        train_sampling_strategy="group_by_length",  # the setting (rows are equal length)
        remove_unused_columns=False,
        eval_strategy="no",
        save_strategy="no",
        logging_steps=1,
        report_to="none",
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    probe = Probe(a.steps)
    probe.watch()
    trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=collate_packed)
    trainer.train()
    losses = {h["step"]: h["loss"] for h in trainer.state.log_history if "loss" in h}
    return {**probe.summary(), "loss_by_step": losses}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("case", choices=sorted(CASES))
    p.add_argument("impl", choices=["tunesmith", "trainer"])
    p.add_argument("config")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--limit", type=int, default=2000, help="alpaca_2k examples read")
    p.add_argument("--chunk-tokens", type=int, default=512)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json-out", required=True)
    p.add_argument("--runs-dir", default=str(ROOT / "runs" / "bench_scale"))
    a = p.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    cfg = parse_config(a.config)
    if a.impl == "trainer" and tunesmith_only(cfg):
        sys.exit("+chunk / +nopack_attn are tunesmith settings: drop them for impl trainer")
    run_dir = Path(a.runs_dir) / f"{a.case}-{a.impl}-{a.config}"
    shutil.rmtree(run_dir, ignore_errors=True)
    start = time.perf_counter()
    run = run_tunesmith if a.impl == "tunesmith" else run_trainer
    out = {**run(a.case, cfg, a, run_dir), **flop_params(a.case)}
    out.update(
        case=a.case, impl=a.impl, config=a.config, **cfg, steps=a.steps, batch=a.batch,
        max_length=a.max_length, chunk_tokens=a.chunk_tokens if cfg["chunked_loss"] else None,
        threads=torch.get_num_threads(), omp_num_threads=os.environ.get("OMP_NUM_THREADS"),
        wall_s=round(time.perf_counter() - start, 1), peak_rss_process_mb=vm_hwm_mb(),
    )  # fmt: skip
    Path(a.json_out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

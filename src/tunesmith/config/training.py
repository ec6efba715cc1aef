"""The sections of a recipe that say how the model is trained (``transfer:``, ``optim:``,
``train:`` with its ``distributed:`` part): typed dataclasses with help text under every field."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tunesmith.config.trackers import check_trackers
from tunesmith.configschema import fld
from tunesmith.errors import ConfigError


@dataclass
class GradualUnfreezeConfig:
    every: int = fld(1, "unfreeze one more layer group every this many `unit`s (ULMFiT)")
    unit: Literal["steps", "epochs"] = fld("epochs", "what `every` counts")

    def validate(self, path: str) -> None:
        if self.every < 1:
            raise ConfigError(f"{path}.every", "must be >= 1")


@dataclass
class TransferConfig:
    freeze_embeddings: bool = fld(False, "freeze the token/position embeddings")
    freeze_layers: int = fld(0, "freeze the first N transformer blocks (bottom up)")
    freeze_patterns: list[str] = fld([], "freeze parameters whose name matches (glob)")
    unfreeze_patterns: list[str] = fld([], "keep these trainable whatever else is frozen (glob)")
    linear_probe: bool = fld(False, "train the task head only")
    gradual_unfreeze: GradualUnfreezeConfig | None = fld(None, "ULMFiT gradual unfreezing")
    layerwise_lr_decay: float | None = fld(
        None, "discriminative LRs: block i gets lr*decay^(L+1-i)"
    )

    def validate(self, path: str) -> None:
        if self.freeze_layers < 0:
            raise ConfigError(f"{path}.freeze_layers", "must be >= 0")
        if self.linear_probe and self.gradual_unfreeze:
            raise ConfigError(
                f"{path}.gradual_unfreeze",
                "cannot be combined with linear_probe",
                "a linear probe never unfreezes the backbone",
            )
        d = self.layerwise_lr_decay
        if d is not None and not 0 < d <= 1:
            raise ConfigError(f"{path}.layerwise_lr_decay", f"must be in (0, 1], got {d}")


@dataclass
class OptimConfig:
    lr: float = fld(5e-5, "peak learning rate (AdamW)")
    weight_decay: float = fld(0.01, "decoupled weight decay; never applied to biases and norms")
    betas: list[float] = fld([0.9, 0.999], "AdamW betas")
    eps: float = fld(1e-8, "AdamW epsilon")
    schedule: Literal["linear", "cosine", "constant"] = fld("linear", "LR schedule after warmup")
    warmup_ratio: float = fld(0.06, "warmup as a fraction of the optimiser steps")
    warmup_steps: int | None = fld(None, "warmup in steps (overrides warmup_ratio)")
    min_lr_ratio: float = fld(0.0, "cosine: final LR as a fraction of the peak")
    max_grad_norm: float | None = fld(1.0, "clip the global gradient norm (null = off)")
    grad_accum: int = fld(1, "micro-batches per optimiser step")

    def validate(self, path: str) -> None:
        if self.lr <= 0:
            raise ConfigError(f"{path}.lr", f"must be > 0, got {self.lr}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"{path}.betas", "must be two numbers in [0, 1)")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"{path}.warmup_ratio", "must be in [0, 1)")
        if self.grad_accum < 1:
            raise ConfigError(f"{path}.grad_accum", "must be >= 1")
        for name in ("weight_decay", "warmup_steps", "max_grad_norm"):
            if (getattr(self, name) or 0) < 0:
                raise ConfigError(f"{path}.{name}", f"must be >= 0, got {getattr(self, name)}")
        if self.eps <= 0 or not 0 <= self.min_lr_ratio <= 1:
            bad = "eps" if self.eps <= 0 else "min_lr_ratio"
            raise ConfigError(f"{path}.{bad}", "eps must be > 0 and min_lr_ratio in [0, 1]")


@dataclass
class DistributedConfig:
    """How several processes (torchrun / accelerate launch) share the work (docs/distributed.md)."""

    strategy: Literal["ddp", "fsdp"] = fld(
        "ddp",
        "ddp: every process holds the whole model, gradients are averaged; fsdp: parameters, "
        "gradients and optimizer state are sharded over the processes (FSDP2, fully_shard: each "
        "transformer block, then the rest); one process: no effect",
    )
    reshard_after_forward: bool = fld(
        True,
        "fsdp: free each block's gathered parameters after its forward (less memory; they are "
        "gathered again for the backward)",
    )


@dataclass
class TrainConfig:
    batch_size: int = fld(32, "examples per micro-batch (per process)")
    eval_batch_size: int = fld(64, "examples per evaluation batch")
    epochs: float = fld(3, "passes over the training data (may be fractional)")
    max_steps: int | None = fld(None, "stop after this many optimiser steps (overrides epochs)")
    eval_every: int | None = fld(None, "evaluate on dev every N optimiser steps (null = per epoch)")
    eval_at_start: bool = fld(False, "also evaluate dev before the first step (logged at step 0)")
    save_every: int | None = fld(None, "checkpoint every N steps (null = at each evaluation)")
    log_every: int = fld(10, "log training metrics every N optimiser steps")
    metric: str | None = fld(
        None,
        "dev metric for best checkpoint/early stopping "
        "(default: accuracy, entity_f1 or loss by task)",
    )
    early_stopping_patience: int | None = fld(None, "stop after N evaluations without improvement")
    keep_checkpoints: int = fld(
        1,
        "checkpoints to keep (besides best/); only the newest two keep optimizer state, and "
        "none once the run has finished",
    )
    precision: Literal["auto", "fp32", "bf16", "fp16"] = fld(
        "auto",
        "forward precision: auto = bf16 where the hardware computes it natively (CUDA compute "
        "capability >= 8.0; a CPU with AMX or AVX512-BF16), else fp32; bf16 / fp16 = autocast "
        "over fp32 trainable weights (fp16: CUDA only, with a gradient scaler)",
    )
    gradient_checkpointing: bool = fld(
        False,
        "recompute each block's activations in backward instead of keeping them (less memory, "
        "about a third more compute)",
    )
    loss_chunk_tokens: int | None = fld(
        None,
        "causal_lm: compute the output head and the LM losses (cross-entropy, kd, lm_kd, gkd) "
        "this many tokens at a time, recomputed in backward, so a micro-batch's full logits "
        "(tokens x vocabulary) are never held; same loss and gradients (null = unchunked)",
    )
    length_grouping: bool = fld(True, "batch similar lengths together to cut padding")
    tensorboard: bool = fld(True, "also write TensorBoard scalars (when installed)")
    report_to: list[str] = fld(
        [],
        "experiment trackers besides metrics.jsonl (always written): tensorboard, wandb, mlflow, "
        "comet_ml, aim, clearml, dvclive, swanlab, trackio (each needs its package)",
    )
    progress: bool = fld(True, "tqdm progress bar")
    num_workers: int = fld(0, "DataLoader workers")
    generate_max_new_tokens: int = fld(64, "causal LM/seq2seq: tokens generated by predict")
    distributed: DistributedConfig = fld(
        DistributedConfig(), "several processes: ddp (default) or fsdp sharding"
    )

    def validate(self, path: str) -> None:
        counts = ("batch_size", "eval_batch_size", "log_every", "keep_checkpoints")
        optional = ("max_steps", "eval_every", "save_every", "early_stopping_patience")
        optional += ("loss_chunk_tokens",)
        for name in (*counts, *optional, "generate_max_new_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                hint = "or null" if name in optional else None
                raise ConfigError(f"{path}.{name}", f"must be >= 1, got {value}", hint)
        if self.num_workers < 0:
            raise ConfigError(f"{path}.num_workers", f"must be >= 0, got {self.num_workers}")
        if not self.epochs > 0:  # also when max_steps overrides it: 0 passes is never meant
            raise ConfigError(f"{path}.epochs", f"must be > 0, got {self.epochs}")
        check_trackers(self.report_to, f"{path}.report_to")

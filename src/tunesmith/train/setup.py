"""Build everything a run needs from a recipe: accelerator, mode (data), model, optimiser.

Kept apart from the loop so the loop reads as "for each step: forward, loss, backward, step".
:func:`setup_run` is the order of the steps; each step is one function below.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, set_seed
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from transformers import PreTrainedTokenizerBase

from tunesmith.adapters import (
    add_adapter,
    list_adapters,
    mark_trainable,
    no_decay_parameters,
    set_active_adapter,
    trainable_summary,
)
from tunesmith.adapters.base import state_of
from tunesmith.atomic import atomic_write_json, atomic_write_text
from tunesmith.config import ModelConfig, Recipe, dump_recipe
from tunesmith.errors import ConfigError
from tunesmith.memory import cast_for_training, enable_gradient_checkpointing
from tunesmith.metrics import greater_is_better
from tunesmith.models import count_parameters
from tunesmith.objectives import ObjectiveTerm, build_terms
from tunesmith.optim import build_optimizer, build_scheduler, param_groups
from tunesmith.packedattn import PACKED, use_packed_attention
from tunesmith.pooling import configure_pooling, describe
from tunesmith.precision import Precision, frozen_dtype, make_scaler, resolve_precision
from tunesmith.train.callbacks import CallbackList
from tunesmith.train.checkpoint import Resumable, recover_best
from tunesmith.train.evaluation import Collate
from tunesmith.train.given import (
    NOTHING_GIVEN,
    Given,
    checkpoint_folder,
    run_tokenizer,
    starting_digest,
)
from tunesmith.train.logging import MetricsLogger
from tunesmith.train.modes import Labels, RunMode, build_mode
from tunesmith.train.runcheck import FINGERPRINT_FILE, RunCheck
from tunesmith.train.runfolder import clear_for_fresh_start
from tunesmith.train.sharding import shard_model, uses_fsdp
from tunesmith.train.state import TrainState
from tunesmith.train.teacher import setup_model_and_teacher
from tunesmith.transfer import (
    GradualUnfreezer,
    LayerLayout,
    apply_freezing,
    layer_layout,
    layerwise_lr_scales,
)

logger = logging.getLogger(__name__)


@dataclass
class Run:
    """The live objects of one training run."""

    recipe: Recipe
    run_dir: Path
    accelerator: Accelerator
    mode: RunMode  # the data, its plan, routing and evaluation (single / mixture / text-to-text)
    model: nn.Module  # as prepared by accelerate (DDP-wrapped when distributed)
    raw_model: nn.Module  # the underlying model
    tokenizer: PreTrainedTokenizerBase
    collator: Collate  # training batches (with cached teacher outputs when distilling)
    optimizer: Optimizer
    scheduler: LRScheduler
    terms: list[ObjectiveTerm]
    unfreezer: GradualUnfreezer | None
    logger: MetricsLogger | None
    state: TrainState
    total_steps: int
    metric: str
    greater_is_better: bool
    trainable_params: int
    total_params: int
    adapter: tuple[str, bool] | None = None  # (adapter name, head saved with it)
    dev_at_start: dict[str, float] | None = None  # dev metrics before training (eval_at_start)
    callbacks: CallbackList = field(default_factory=CallbackList)  # user hooks (main process)
    start_digest: str = ""  # the starting weights' digest (run fingerprint)
    sharded: bool = False  # FSDP (train.distributed.strategy: fsdp): see train.sharding
    precision: Precision | None = None  # train.precision as resolved (tunesmith.precision)
    scaler: torch.amp.GradScaler | None = None  # fp16 loss scaling (CUDA)
    attention: str | None = None  # the attention backend of packed training (tunesmith.packedattn)

    @property
    def resumable(self) -> Resumable:
        """What a checkpoint saves besides the loop state."""
        return Resumable(
            self.raw_model, self.optimizer, self.scheduler, self.terms, self.sharded, self.scaler
        )


def total_steps(recipe: Recipe, per_epoch: int) -> int:
    if recipe.train.max_steps:
        return recipe.train.max_steps
    return max(1, math.ceil(recipe.train.epochs * per_epoch))


def make_accelerator(recipe: Recipe) -> Accelerator:
    """The run's accelerator (DDP settings; CPU when torchrun starts several CPU processes)."""
    # autocast is applied by the loop itself (tunesmith.precision): accelerate's mixed-precision
    # setting is process-global and would forbid two runs with different precisions in one process.
    # Gradual unfreezing leaves parameters without gradients in early steps, and so do the other
    # tasks' heads in a multi-task step: DDP must allow that.
    unused = recipe.transfer.gradual_unfreeze is not None or recipe.task == "multi_head"
    ddp = DistributedDataParallelKwargs(find_unused_parameters=unused)
    # accelerate ignores torchrun's WORLD_SIZE on a CPU-only machine unless told cpu=True (which,
    # for a single process, would also hide an Apple/Intel GPU: only set it when distributed).
    multi_cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    return Accelerator(cpu=multi_cpu, kwargs_handlers=[ddp])


def write_run_files(check: RunCheck, recipe: Recipe, labels: Labels) -> None:
    """After every check passed (main process): a fresh start clears what a run killed before
    its first checkpoint left and writes ``config.yaml`` and ``fingerprint.json``; every start
    writes ``labels.json``. All atomically."""
    run_dir = check.run_dir
    recover_best(run_dir)
    if not check.resuming:
        clear_for_fresh_start(run_dir)
        atomic_write_text(run_dir / "config.yaml", dump_recipe(recipe))
        atomic_write_json(run_dir / FINGERPRINT_FILE, check.current)
    if labels is not None:  # the label list ({task: labels} for several tasks); none: generation
        atomic_write_json(run_dir / "labels.json", labels)


def attach_adapter(recipe: Recipe, model: nn.Module) -> tuple[str, bool] | None:
    """Inject the recipe's adapter and leave only it (and the head, if asked) trainable."""
    if recipe.adapter is None or recipe.per_task_adapters:  # per task: the mode built them
        return None
    name, train_head, config = recipe.adapter_settings()
    if name in list_adapters(model):  # the model is an adapter run: go on training its adapter
        loaded = state_of(model).get(name).config
        if type(loaded) is not type(config):
            raise ConfigError(
                "adapter",
                f"the starting model already has a {type(loaded).method} adapter {name!r}; "
                f"the recipe asks for {type(config).method}",
                "give the adapter another name (adapter.name) to add a new one",
            )
        set_active_adapter(model, name)
    else:
        add_adapter(model, name, config)
    mark_trainable(model, name, train_head=train_head)
    logger.info("adapter %r (%s): %s", name, type(config).__name__, trainable_summary(model))
    return name, train_head


def freeze_as_recipe(recipe: Recipe, model: nn.Module) -> list[str]:
    """Apply the recipe's ``transfer:`` freezing keys; returns the frozen parameter names."""
    t = recipe.transfer
    return apply_freezing(
        model,
        embeddings=t.freeze_embeddings,
        first_n_layers=t.freeze_layers,
        patterns=t.freeze_patterns,
        linear_probe=t.linear_probe,
        unfreeze_patterns=t.unfreeze_patterns,
    )


def configure_training(recipe: Recipe, model: nn.Module) -> tuple[list[dict], LayerLayout]:
    """Freezing and discriminative LRs -> (param groups, layer layout).

    Gradual unfreezing is started later, after DDP has wrapped the model: DDP only all-reduces
    parameters that require grad when it wraps them, so every parameter that will ever train must
    still be trainable then."""
    t = recipe.transfer
    freeze_as_recipe(recipe, model)
    layout = layer_layout(model)
    will_train = {name for name, p in model.named_parameters() if p.requires_grad}
    scales = (
        layerwise_lr_scales(model, layout, t.layerwise_lr_decay) if t.layerwise_lr_decay else None
    )
    groups = param_groups(
        model,
        lr=recipe.optim.lr,
        weight_decay=recipe.optim.weight_decay,
        lr_scales=scales,
        include=lambda name, p: name in will_train,
        no_decay_names=no_decay_parameters(model) if recipe.adapter else (),
    )
    return groups, layout


def setup_pooling(
    recipe: Recipe, model: nn.Module, accelerator: Accelerator, given: Given = NOTHING_GIVEN
) -> None:
    """Resolve and apply ``head.pooling`` once freezing and adapters say whether the pooler
    trains (:mod:`tunesmith.pooling`); print the choice and why."""
    if recipe.task != "sequence_classification":
        return
    folder = checkpoint_folder(recipe, given)
    mode, why = configure_pooling(model, recipe.head.pooling, folder)
    accelerator.print(describe(mode, why))


def setup_terms(
    recipe: Recipe,
    terms: list[ObjectiveTerm],
    model: nn.Module,
    frozen: torch.dtype = torch.float32,
) -> list[dict]:
    """Let each term prepare on the frozen model (before the optimizer: terms may create
    trainable projections); returns the param groups of what they own. ``frozen``: the dtype
    of frozen models a term loads (``model.dtype``)."""
    o = recipe.optim
    for term in terms:
        term.frozen_dtype = frozen
        term.setup(model)
    extra = nn.ModuleList([m for t in terms for m in t.trainable_modules()])
    return param_groups(extra, lr=o.lr, weight_decay=o.weight_decay) if len(extra) else []


def build_optimization(
    recipe: Recipe, groups: list[dict], n_steps: int
) -> tuple[Optimizer, LRScheduler]:
    """AdamW over ``groups`` and the recipe's warmup + decay schedule over ``n_steps``."""
    o = recipe.optim
    optimizer = build_optimizer(groups, lr=o.lr, betas=tuple(o.betas), eps=o.eps)
    warmup = o.warmup_steps if o.warmup_steps is not None else round(o.warmup_ratio * n_steps)
    scheduler = build_scheduler(
        optimizer,
        o.schedule,
        warmup_steps=min(warmup, n_steps),
        total_steps=n_steps,
        min_lr_ratio=o.min_lr_ratio,
    )
    return optimizer, scheduler


def check_fsdp(recipe: Recipe) -> None:
    """What a sharded model cannot do (yet)."""
    if recipe.transfer.gradual_unfreeze is not None:
        raise ConfigError(
            "transfer.gradual_unfreeze",
            "cannot be combined with train.distributed.strategy: fsdp (it turns parameters "
            "trainable after the model is sharded)",
            "use strategy: ddp for gradual unfreezing",
        )


def setup_precision(recipe: Recipe, accelerator: Accelerator, check: RunCheck) -> Precision:
    """Resolve ``train.precision`` (``auto`` keeps a resumed run's first choice), add it to the
    fingerprint and say what was chosen and why."""
    saved = (check.saved or {}).get("precision")
    precision = resolve_precision(recipe.train.precision, accelerator.device, pinned=saved)
    check.add(precision=precision.name)
    accelerator.print(f"tunesmith: precision {precision.name} ({precision.reason})")
    return precision


def setup_attention(recipe: Recipe, model: nn.Module, accelerator: Accelerator) -> str | None:
    """Packed causal-LM training: a model on SDPA attends per example (``tunesmith_packed``,
    same results without the row-wide block mask) unless the recipe names
    ``model.attn_implementation``; says which attention runs. None when rows are not packed."""
    if recipe.data is None or not recipe.data.packing:
        return None
    explicit = isinstance(recipe.model, ModelConfig) and recipe.model.attn_implementation
    if not explicit and use_packed_attention(model):
        accelerator.print(f"tunesmith: attention {PACKED} (packed rows: causal SDPA per example)")
        return PACKED
    name = str(getattr(getattr(model, "config", None), "_attn_implementation", None))
    why = "model.attn_implementation" if explicit else "per-example attention needs sdpa"
    accelerator.print(f"tunesmith: attention {name} (packed rows: block-diagonal mask; {why})")
    return name


def setup_memory(recipe: Recipe, model: nn.Module, groups: list[dict], frozen: torch.dtype) -> None:
    """``model.dtype``: frozen weights stored in ``frozen``, trained ones fp32;
    ``train.gradient_checkpointing``: recompute activations in backward."""
    if recipe.model_options.dtype != "fp32":
        cast_for_training(model, [p for g in groups for p in g["params"]], frozen)
    if recipe.train.gradient_checkpointing:
        enable_gradient_checkpointing(model)


def setup_run(
    recipe: Recipe,
    run_dir: Path,
    resume: bool,
    accelerator: Accelerator,
    given: Given = NOTHING_GIVEN,
) -> Run:
    """Every live object of a run, in the order that keeps runs reproducible (seeded draws).
    ``given``: objects passed in from Python that replace what the recipe would load.

    Nothing in ``run_dir`` is written before the run's fingerprint is checked (when resuming)."""
    check = RunCheck.start(recipe, run_dir, resume, accelerator.num_processes, given.datasets)
    precision = setup_precision(recipe, accelerator, check)
    frozen = frozen_dtype(recipe.model_options.dtype, precision)
    set_seed(recipe.seed)
    tokenizer = run_tokenizer(recipe, given)
    mode = build_mode(recipe, tokenizer, accelerator, datasets=given.datasets)
    check.add(examples=len(mode.train_examples), labels=mode.labels())
    terms = build_terms(recipe.objectives)
    model, collator = setup_model_and_teacher(
        recipe, tokenizer, mode, terms, accelerator, given.model, frozen
    )
    check.add(model=starting_digest(model))
    attention = setup_attention(recipe, model, accelerator)
    accelerator.wait_for_everyone()  # every process checked before the main one writes
    if accelerator.is_main_process:
        write_run_files(check, recipe, mode.labels())
    adapter = attach_adapter(recipe, model)
    groups, layout = configure_training(recipe, model)
    setup_pooling(recipe, model, accelerator, given)
    groups += setup_terms(recipe, terms, model, frozen)
    setup_memory(recipe, model, groups, frozen)
    trainable, total = count_parameters(model)
    n_steps = total_steps(recipe, mode.steps_per_epoch)
    sharded = uses_fsdp(recipe, accelerator.num_processes)
    if sharded:  # last: after everything that freezes, wraps or hooks the model
        check_fsdp(recipe)
        reshard = recipe.train.distributed.reshard_after_forward
        groups = shard_model(model, groups, accelerator.device, reshard)
    optimizer, scheduler = build_optimization(recipe, groups, n_steps)
    prepared, optimizer = (model, optimizer) if sharded else accelerator.prepare(model, optimizer)
    gradual = recipe.transfer.gradual_unfreeze
    metric = recipe.train.metric or mode.default_metric
    return Run(
        recipe=recipe,
        run_dir=run_dir,
        accelerator=accelerator,
        mode=mode,
        model=prepared,
        raw_model=model,
        tokenizer=tokenizer,
        collator=collator,
        adapter=adapter,
        optimizer=optimizer,
        scheduler=scheduler,
        terms=terms,
        unfreezer=GradualUnfreezer(model, layout, gradual.every) if gradual else None,
        logger=None,  # opened by the loop once a resume has trimmed metrics.jsonl
        state=TrainState(),
        total_steps=n_steps,
        metric=metric,
        greater_is_better=greater_is_better(metric),
        trainable_params=trainable,
        total_params=total,
        start_digest=check.current["model"],
        sharded=sharded,
        precision=precision,
        scaler=make_scaler(precision, accelerator.device),
        attention=attention,
    )

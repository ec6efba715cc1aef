"""Build everything a run needs from a recipe: accelerator, data, model, freezing, optimiser.

Kept apart from the loop so the loop reads as "for each step: forward, loss, backward, step".
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, set_seed
from torch import nn

from tunesmith.adapters import (
    add_adapter,
    list_adapters,
    load_model_or_adapter,
    mark_trainable,
    no_decay_parameters,
    set_active_adapter,
    trainable_summary,
)
from tunesmith.adapters.base import state_of
from tunesmith.config import Recipe, dump_recipe
from tunesmith.data.collate import Collator
from tunesmith.data.packing import attends_within_examples
from tunesmith.data.pipeline import Datasets, build_datasets
from tunesmith.errors import ConfigError
from tunesmith.models import align_pad_token, count_parameters, load_tokenizer
from tunesmith.objectives import ObjectiveTerm, build_terms
from tunesmith.optim import build_optimizer, build_scheduler, param_groups
from tunesmith.train.distill_setup import build_student, load_run_teacher, use_teacher
from tunesmith.train.evaluation import DEFAULT_METRIC, LOWER_IS_BETTER
from tunesmith.train.logging import MetricsLogger
from tunesmith.train.multitask_setup import MultiTask, build_multitask
from tunesmith.train.state import TrainState
from tunesmith.transfer import (
    GradualUnfreezer,
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
    model: object  # as prepared by accelerate (DDP-wrapped when distributed)
    raw_model: object  # the underlying transformers model
    tokenizer: object
    data: Datasets
    collator: Collator
    optimizer: object
    scheduler: object
    terms: list[ObjectiveTerm]
    unfreezer: GradualUnfreezer | None
    logger: MetricsLogger | None
    state: TrainState
    total_steps: int
    steps_per_epoch: int
    metric: str
    greater_is_better: bool
    trainable_params: int
    total_params: int
    adapter: tuple[str, bool] | None = None  # (adapter name, head saved with it)
    multi: MultiTask | None = None  # multi-task data, sampler and rates (task: multi_head)
    dev_at_start: dict | None = None  # dev metrics before training (train.eval_at_start)


def steps_per_epoch(recipe: Recipe, n_train: int, world: int) -> int:
    micro = math.ceil(n_train / recipe.train.batch_size) // world or 1
    return math.ceil(micro / recipe.optim.grad_accum)


def total_steps(recipe: Recipe, per_epoch: int) -> int:
    if recipe.train.max_steps:
        return recipe.train.max_steps
    return max(1, math.ceil(recipe.train.epochs * per_epoch))


def prepare_run_dir(recipe: Recipe, run_dir: Path, resume: bool, accelerator) -> None:
    """Create the run dir; refuse to overwrite a run unless resuming with the same recipe.

    Every process checks before any process writes (else rank 1 would see rank 0's new file)."""
    text = dump_recipe(recipe)
    saved = run_dir / "config.yaml"
    if saved.is_file():
        if not resume:
            raise ConfigError(
                "output_dir",
                f"run directory {run_dir} already holds a run",
                "pass --resume to continue it, or choose another output_dir",
            )
        if saved.read_text() != text:
            raise ConfigError(
                "output_dir",
                f"the recipe differs from the one {run_dir} was started with",
                "resume with the same recipe and overrides",
            )
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        saved.write_text(text)
    accelerator.wait_for_everyone()


def build_model(recipe: Recipe, data: Datasets, tokenizer):
    vocab = data.vocab
    kwargs = {}
    if vocab is not None:
        kwargs = dict(num_labels=len(vocab), id2label=vocab.id2label, label2id=vocab.label2id)
    model = load_model_or_adapter(
        recipe.model_source,
        recipe.task,
        from_scratch=recipe.from_scratch,
        init_seed=recipe.seed,
        **kwargs,
    )
    align_pad_token(model, tokenizer)
    return model


def attach_adapter(recipe: Recipe, model) -> tuple[str, bool] | None:
    """Inject the recipe's adapter and leave only it (and the head, if asked) trainable."""
    if recipe.adapter is None:
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


def freeze_as_recipe(recipe: Recipe, model) -> list[str]:
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


def configure_training(recipe: Recipe, model):
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


def setup_run(recipe: Recipe, run_dir: Path, resume: bool) -> Run:
    o, tr = recipe.optim, recipe.train
    # bf16 autocast is applied by the loop itself (torch.autocast): accelerate's mixed-precision
    # setting is process-global and would forbid two runs with different precisions in one process.
    # Gradual unfreezing leaves parameters without gradients in early steps, and so do the other
    # tasks' heads in a multi-task step: DDP must allow that.
    unused = recipe.transfer.gradual_unfreeze is not None or recipe.task == "multi_head"
    ddp = DistributedDataParallelKwargs(find_unused_parameters=unused)
    # accelerate ignores torchrun's WORLD_SIZE on a CPU-only machine unless told cpu=True (which,
    # for a single process, would also hide an Apple/Intel GPU: only set it when distributed).
    multi_cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    accelerator = Accelerator(cpu=multi_cpu, kwargs_handlers=[ddp])
    prepare_run_dir(recipe, run_dir, resume, accelerator)
    set_seed(recipe.seed)
    tokenizer = load_tokenizer(recipe.model_source)
    multi = build_multitask(recipe, tokenizer, accelerator, run_dir) if recipe.tasks else None
    model = None
    if multi is not None:
        data, model = multi.data, multi.model
    else:
        data = build_datasets(recipe, tokenizer)
        if data.vocab is not None and accelerator.is_main_process:
            (run_dir / "labels.json").write_text(json.dumps(data.vocab.labels, indent=2))
    teacher = load_run_teacher(recipe, tokenizer, data) if recipe.distill else None
    if recipe.student and recipe.student.from_teacher:
        model = build_student(recipe, teacher, tokenizer)
    elif model is None:  # single task, or one text-to-text model for several tasks
        model = build_model(recipe, data, tokenizer)
    if recipe.data is not None and recipe.data.packing and not attends_within_examples(model):
        raise ConfigError(
            "data.packing",
            f"{type(model).__name__} attends across the examples of a packed row (its attention "
            "ignores position_ids resets)",
            "set data.packing: false for this model",
        )
    adapter = attach_adapter(recipe, model)
    groups, layout = configure_training(recipe, model)
    terms = build_terms(recipe.objectives)
    collator = Collator(pad_token_id=tokenizer.pad_token_id)
    if teacher is not None:
        collator = use_teacher(recipe, teacher, terms, data, collator, accelerator)
    for term in terms:
        term.setup(model)  # before the optimizer: terms may create trainable projections
    extra = nn.ModuleList([m for t in terms for m in t.trainable_modules()])
    if len(extra):
        groups += param_groups(extra, lr=o.lr, weight_decay=o.weight_decay)
    trainable, total = count_parameters(model)
    if multi is not None:
        per_epoch = multi.steps_per_epoch
    else:
        per_epoch = steps_per_epoch(recipe, len(data.train), accelerator.num_processes)
    n_steps = total_steps(recipe, per_epoch)
    optimizer = build_optimizer(groups, lr=o.lr, betas=tuple(o.betas), eps=o.eps)
    warmup = o.warmup_steps if o.warmup_steps is not None else round(o.warmup_ratio * n_steps)
    scheduler = build_scheduler(
        optimizer,
        o.schedule,
        warmup_steps=min(warmup, n_steps),
        total_steps=n_steps,
        min_lr_ratio=o.min_lr_ratio,
    )
    prepared, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    gradual = recipe.transfer.gradual_unfreeze
    unfreezer = GradualUnfreezer(model, layout, gradual.every) if gradual else None
    metric = tr.metric or ("mean" if recipe.text_to_text else DEFAULT_METRIC[recipe.task])
    logger = (
        MetricsLogger(run_dir, tensorboard=tr.tensorboard) if accelerator.is_main_process else None
    )
    return Run(
        recipe=recipe,
        run_dir=run_dir,
        accelerator=accelerator,
        model=prepared,
        raw_model=model,
        tokenizer=tokenizer,
        data=data,
        collator=collator,
        adapter=adapter,
        multi=multi,
        optimizer=optimizer,
        scheduler=scheduler,
        terms=terms,
        unfreezer=unfreezer,
        logger=logger,
        state=TrainState(),
        total_steps=n_steps,
        steps_per_epoch=per_epoch,
        metric=metric,
        greater_is_better=metric not in LOWER_IS_BETTER,
        trainable_params=trainable,
        total_params=total,
    )

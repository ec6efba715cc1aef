"""Single-task runs: one dataset (the recipe's ``data:``), one model, shuffled or length-grouped
batches."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import BatchSampler
from transformers import PreTrainedTokenizerBase

from tunesmith.config import Recipe
from tunesmith.data.collate import LengthGroupedSampler
from tunesmith.data.labels import LabelVocab
from tunesmith.data.pipeline import Datasets, build_datasets
from tunesmith.errors import ConfigError
from tunesmith.tasks.causal_lm import attends_within_examples
from tunesmith.train.evaluation import Evaluation, default_metric, evaluate_detailed
from tunesmith.train.modes.base import Labels, Plan, RunMode, load_hf_model


def steps_per_epoch(recipe: Recipe, n_train: int, world: int) -> int:
    """Optimiser steps per epoch: the batches of ``n_train`` examples, split over ``world``
    processes, ``optim.grad_accum`` micro-batches a step."""
    micro = math.ceil(n_train / recipe.train.batch_size) // world or 1
    return math.ceil(micro / recipe.optim.grad_accum)


@dataclass
class SingleTask(RunMode):
    """One dataset (``data``: train and optional dev/test splits, label vocabulary) and one model."""

    recipe: Recipe
    tokenizer: PreTrainedTokenizerBase
    accelerator: Accelerator
    data: Datasets

    @classmethod
    def build(
        cls,
        recipe: Recipe,
        tokenizer: PreTrainedTokenizerBase,
        accelerator: Accelerator,
        datasets: Any = None,
    ) -> SingleTask:
        """``datasets``: splits passed in from Python (see :func:`build_mode`)."""
        data = build_datasets(recipe, tokenizer, given=datasets)
        return cls(recipe, tokenizer, accelerator, data)

    @property
    def train_examples(self) -> list[dict[str, Any]]:
        return self.data.train

    @property
    def steps_per_epoch(self) -> int:
        return steps_per_epoch(self.recipe, len(self.data.train), self.accelerator.num_processes)

    @property
    def default_metric(self) -> str:
        return default_metric(self.recipe.task)

    @property
    def label_vocab(self) -> LabelVocab | None:
        return self.data.vocab

    def plan(self, epoch: int) -> Plan:
        tr, world = self.recipe.train, self.accelerator.num_processes
        lengths = [len(ex["input_ids"]) for ex in self.data.train]
        if tr.length_grouping:
            sampler = LengthGroupedSampler(
                lengths, tr.batch_size, seed=self.recipe.seed, epoch=epoch
            )
        else:
            g = torch.Generator().manual_seed(self.recipe.seed * 1000 + epoch)
            sampler = torch.randperm(len(lengths), generator=g).tolist()
        batches = list(BatchSampler(sampler, tr.batch_size, drop_last=False))
        if len(batches) < world:  # every process needs a batch, or DDP waits forever
            batches = (batches * world)[:world]
        usable = len(batches) - len(batches) % world
        mine = batches[:usable][self.accelerator.process_index :: world]
        k = self.recipe.optim.grad_accum
        return [mine[i : i + k] for i in range(0, len(mine), k)]

    def route(self, example: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return self.recipe.task, {}

    def has(self, split: str) -> bool:
        return bool(getattr(self.data, split))

    def split_examples(self, split: str) -> list[dict[str, Any]] | None:
        return getattr(self.data, split) or None

    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        return self.evaluate_detailed(model, split).metrics

    def evaluate_detailed(self, model: nn.Module, split: str) -> Evaluation:
        return evaluate_detailed(
            model,
            getattr(self.data, split),
            self.eval_collator(),
            self.recipe.task,
            self.data.vocab,
            self.accelerator,
            self.recipe.train.eval_batch_size,
            self.recipe.train.loss_chunk_tokens,
        )

    def labels(self) -> Labels:
        return self.data.vocab.labels if self.data.vocab else None

    def build_model(self) -> nn.Module:
        return load_hf_model(self.recipe, self.tokenizer, self.data.vocab)

    def check_model(self, model: nn.Module) -> None:
        data = self.recipe.data
        if data is not None and data.packing and not attends_within_examples(model):
            raise ConfigError(
                "data.packing",
                f"{type(model).__name__} attends across the examples of a packed row (its "
                "attention ignores position_ids resets)",
                "set data.packing: false for this model",
            )

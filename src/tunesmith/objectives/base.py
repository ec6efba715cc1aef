"""The objective-term interface: extra losses added to the task loss.

A run's loss is ``task_loss + sum(term.weight * term.loss(...))``. Distillation (KD, hidden-state
losses) and continual learning (EWC, LwF, L2 anchors) are terms; so a recipe composes them by
listing them. A term sees the model, the batch and the model outputs of the step; hooks let it
prepare state once (e.g. snapshot the pretrained weights) and save that state in checkpoints.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from tunesmith.configschema import build
from tunesmith.registry import OBJECTIVES


class ObjectiveTerm:
    """Base class. Subclasses set ``name`` and ``Params`` (a dataclass) and implement ``loss``.

    ``needs_teacher``: the term reads a teacher (the recipe must give ``distill.teacher``);
    ``cacheable``: all it reads from the teacher is in the teacher-output cache (logits), so with
    ``distill.cache`` it needs no live teacher.
    """

    name: ClassVar[str]
    needs_teacher: ClassVar[bool] = False
    cacheable: ClassVar[bool] = False
    # storage dtype of frozen models a term loads itself (LwF's previous model): the recipe's
    # model.dtype, set by the loop before setup()
    frozen_dtype: torch.dtype = torch.float32

    @dataclasses.dataclass
    class Params:
        pass

    def __init__(self, weight: float = 1.0, params: Any = None):
        self.weight = weight
        self.params = params if params is not None else self.Params()

    def setup(self, model: torch.nn.Module) -> None:
        """Called once before the first step (after freezing); may snapshot state."""

    def loss(
        self, model: torch.nn.Module, batch: Mapping[str, torch.Tensor], outputs: Any
    ) -> torch.Tensor:
        """Unweighted term value, a scalar tensor in the graph."""
        raise NotImplementedError

    def forward_kwargs(self) -> dict[str, Any]:
        """Extra keyword arguments for the model's forward in training steps (e.g.
        ``output_hidden_states=True``), so the term never has to change the model's saved config."""
        return {}

    def trainable_modules(self) -> list[torch.nn.Module]:
        """Modules with trainable parameters the term owns (e.g. projections), created in
        :meth:`setup`; the loop puts their parameters in the optimizer."""
        return []

    def adjust_gradients(self, model: torch.nn.Module, params: list[torch.nn.Parameter]) -> None:
        """Change the accumulated gradients of ``params`` in place before clipping and the
        optimizer step (gradient surgery, e.g. A-GEM's projection); the default does nothing."""

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors to checkpoint so a resumed run continues with the same term state."""
        return {}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Restore :meth:`state_dict` output."""


def register(cls: type[ObjectiveTerm], help: str) -> type[ObjectiveTerm]:
    """Add a term to :data:`tunesmith.registry.OBJECTIVES` under its ``name``."""
    OBJECTIVES.register(cls.name, cls, help)
    return cls


def build_terms(configs: list[Any]) -> list[ObjectiveTerm]:
    """Recipe ``objectives:`` entries -> term instances (params validated with their key path)."""
    terms = []
    for i, cfg in enumerate(configs):
        cls = OBJECTIVES.get(cfg.name, f"objectives[{i}].name")
        params = build(cls.Params, cfg.params, f"objectives[{i}].params")
        terms.append(cls(weight=cfg.weight, params=params))
    return terms


def combine(
    task_loss: torch.Tensor,
    terms: list[ObjectiveTerm],
    model: torch.nn.Module,
    batch: Mapping[str, torch.Tensor],
    outputs: Any,
    task_weight: float = 1.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """``task_weight * task_loss + sum(weight_i * term_i)`` and its parts (detached floats:
    ``loss`` is the weighted total, the others unweighted values, for logging)."""
    total = task_weight * task_loss if task_weight != 1.0 else task_loss
    parts = {"task_loss": float(task_loss.detach())}
    for term in terms:
        value = term.loss(model, batch, outputs)
        parts[term.name] = float(value.detach())
        total = total + term.weight * value
    parts["loss"] = float(total.detach())
    return total, parts

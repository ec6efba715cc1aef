"""Learning without Forgetting (Li & Hoiem 2017): the term and the method.

Term ``lwf``: ``T^2 * KL(p_prev^T || p_cur^T)`` between the previous model's and the current
model's softened outputs on the *new* data: summed over the earlier tasks' heads (separate
heads), over the earlier tasks' labels (a shared head), or per response token (causal LM,
positions with labels != -100). The previous model is loaded from the folder the state names.

Method ``lwf`` (``continual: {method: lwf, lwf: {weight, temperature}}``) needs nothing of its
own between stages: the runner's state always names the previous model and the old heads.

Causal LMs with ``cache: true``: the previous model's top-k + tail targets on the stage's
training data are computed once into the teacher cache (:mod:`tunesmith.distill.cache`, the same
format and fingerprinting as a distillation teacher's) before training, and the term reads them
from the batch (:func:`tunesmith.distill.topk.cached_lm_divergence`): no previous-model forward
per step, and the previous model is not kept in memory.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from tunesmith.adapters import load_model_or_adapter
from tunesmith.configschema import fld
from tunesmith.distill.chunked import ChunkedOutputs
from tunesmith.distill.losses import generalized_jsd, hinton_kd_loss, lm_token_mask
from tunesmith.distill.topk import cached_lm_divergence
from tunesmith.errors import ConfigError
from tunesmith.heads import logits_per_head
from tunesmith.objectives.base import register
from tunesmith.objectives.continual.base import ContinualMethod, SequenceView, register_method
from tunesmith.objectives.continual.ewc import check_weight
from tunesmith.objectives.continual.term import STATE_HELP, ContinualTerm, device_of
from tunesmith.tasks import IGNORE_INDEX, model_inputs, task_kind

__all__ = ["LwFMethod", "LwFTerm"]

_T_HELP = "softmax temperature T (Li & Hoiem use 2; loss * T^2)"
_CACHE_HELP = (
    "causal LM: the previous model's top-k + tail targets cached once (no forward per step)"
)


class LwFTerm(ContinualTerm):
    name = "lwf"

    @dataclasses.dataclass
    class Params:
        state: str | None = fld(None, STATE_HELP)
        temperature: float = fld(2.0, _T_HELP)
        cache: bool = fld(False, _CACHE_HELP)
        top_k: int = fld(32, "cached targets: the previous model's top-k log-probs per token")
        cache_dir: str | None = fld(None, "cached targets' root (default: the teacher cache's)")

    previous: nn.Module | None = None
    cached: bool = False

    def __init__(self, weight: float = 1.0, params: Any = None):
        super().__init__(weight, params)
        if self.params.temperature <= 0:
            raise ConfigError(f"objectives.{self.name}.params.temperature", "must be > 0")
        self.heads: list[dict[str, torch.Tensor]] = []

    def _load_previous(self) -> nn.Module:
        state = self.continual_state()
        previous = load_model_or_adapter(state.previous_model, state.task, dtype=self.frozen_dtype)
        return previous.requires_grad_(False).eval()

    def cache_request(self) -> tuple[nn.Module, int, str | None] | None:
        """(previous model, k, cache root) when its targets should be cached, else None."""
        state = self.continual_state()
        if not self.params.cache or state.previous_model is None:
            return None
        if not task_kind(state.task).label_shift:
            raise ConfigError(
                f"objectives.{self.name}.params.cache",
                "cached LwF targets are for causal LMs",
                "classifiers run the previous model live (it is cheap)",
            )
        return self._load_previous(), self.params.top_k, self.params.cache_dir

    def cache_ready(self, cache: Any) -> None:
        """The targets are attached to the training examples: no live previous model."""
        self.cached = True

    def setup(self, model: nn.Module) -> None:
        state = self.continual_state()
        if state.previous_model is None or self.cached:
            return  # first stage: nothing to remember; or targets cached
        self.previous = self._load_previous()
        kind = task_kind(state.task)
        if state.heads == "separate" and kind.classification and not kind.per_token:
            self.heads = [state.head_weights[t] for t in state.seen if t in state.head_weights]

    def loss(self, model, batch, outputs) -> torch.Tensor:
        if self.cached and "teacher_topk_tail" in batch:
            mask, T = lm_token_mask(batch["labels"]), self.params.temperature
            if isinstance(outputs, ChunkedOutputs):  # train.loss_chunk_tokens
                return T**2 * outputs.lm.topk_tail(batch["labels"], batch, 0.0, T)
            return T**2 * cached_lm_divergence(outputs.logits[:, :-1], batch, mask, 0.0, T)
        if self.previous is None:
            return torch.zeros((), device=device_of(model))
        device = device_of(model)
        if device_of(self.previous) != device:
            self.previous.to(device)
        state, T = self.continual_state(), self.params.temperature
        task = state.task
        inputs = model_inputs(task, batch)
        if self.heads:  # separate heads: old tasks' outputs through their own heads
            current = logits_per_head(model, self.heads, inputs)
            with torch.no_grad():
                previous = logits_per_head(self.previous, self.heads, inputs)
            losses = [hinton_kd_loss(c, p, T) for c, p in zip(current, previous, strict=True)]
            return torch.stack(losses).sum()
        with torch.no_grad():
            previous = self.previous(**inputs).logits
        current = outputs.logits
        if task_kind(task).label_shift:  # causal LM: position t predicts token t+1
            mask = lm_token_mask(batch["labels"])
            return T**2 * generalized_jsd(current[:, :-1], previous[:, :-1], 0.0, T, mask)
        if current.dim() == 3:  # token classification, seq2seq
            return hinton_kd_loss(current, previous, T, batch["labels"] != IGNORE_INDEX)
        ids = state.old_label_ids
        if ids is not None:  # shared head: the labels of the tasks seen so far
            current, previous = current[:, ids], previous[:, ids]
        return hinton_kd_loss(current, previous, T)


class LwFMethod(ContinualMethod):
    """LwF between stages: the previous model (named in every state) is the teacher."""

    name = "lwf"

    @dataclasses.dataclass
    class Params:
        weight: float = fld(1.0, "lambda, the lwf term's weight")
        temperature: float = fld(2.0, _T_HELP)
        cache: bool = fld(False, _CACHE_HELP)
        top_k: int = fld(32, "cached targets: top-k log-probs per token (plus a tail bucket)")

        def validate(self, path: str) -> None:
            check_weight(self.weight, path)
            if self.temperature <= 0:
                raise ConfigError(f"{path}.temperature", "must be > 0")

    def terms(self, seq: SequenceView, k: int) -> list[dict[str, Any]]:
        p = self.params
        params = {"state": str(seq.state_path(k)), "temperature": p.temperature}
        if p.cache:
            params |= {"cache": True, "top_k": p.top_k}
        return [{"name": "lwf", "weight": self.params.weight, "params": params}]


register(LwFTerm, "LwF: T^2 KL(previous model || current) on the new data (Li & Hoiem 2017)")
register_method(LwFMethod, "LwF: distil the previous model on the new data (Li & Hoiem 2017)")
